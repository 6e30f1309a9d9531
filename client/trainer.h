// gradctl train's run: a session trained over a data set, epoch by epoch,
// with evaluation, metrics, checkpoints and --resume (trainer.cc: the loop;
// trainer_files.cc: checkpoints, metrics files, the plot, --save).
#ifndef GRADSERVE_CLIENT_TRAINER_H_
#define GRADSERVE_CLIENT_TRAINER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "client/dataset.h"
#include "client/gradctl_common.h"
#include "client/progress.h"
#include "client/train_history.h"
#include "client/train_plan.h"
#include "client/train_warnings.h"

namespace gradserve::client {

// The flags of `gradctl train` (gradctl_train.cc defines and checks them).
struct TrainFlags {
  std::string graph, data, val, loss, optimizer = "sgd", schedule = "constant";
  std::string accuracy_of, labels, out, resume, save, progress = "auto";
  std::vector<std::string> map;
  int64_t epochs = 10, batch_size = 32, eval_batch_size = 256;
  int64_t checkpoint_every = 0, max_steps = 0, lr_step_epochs = 1;
  int64_t diagnostics_every = 10;
  bool shuffle = false, nesterov = false, diagnostics = false;
  uint64_t seed = 0;
  double lr = 0, weight_decay = 0, momentum = 0, max_grad_norm = 0;
  double lr_gamma = 0.1, lr_min = 0, val_split = 0, divergence_factor = 10;
  double progress_every = 5;
  CLI::Option *lr_option = nullptr, *weight_decay_option = nullptr;
  CLI::Option* diagnostics_every_option = nullptr;
};

// Where a run is: the epoch under way (0-based), its next batch, and the
// generator's state when that epoch's order was drawn.
struct Position {
  int64_t epoch = 0, batch = 0;
  uint64_t epoch_rng = 0;
};

// The optimizer the flags name.
gradserve::v1::Optimizer OptimizerOf(const TrainFlags& f);

class Trainer {
 public:
  Trainer(Context& context, const TrainFlags& f) : c_(context), f_(f) {}

  // Creates the session, trains (from --resume's checkpoint when given),
  // saves, and closes the session.
  absl::Status Run();

 private:
  absl::Status Load();
  // The last val_split of a seeded permutation is held out.
  absl::Status Split();
  absl::Status FindLabels();
  absl::Status CreateSession();
  // Identifies what decides the run's course, so that a checkpoint resumes
  // only the run it came from.
  uint64_t RunFingerprint() const;
  absl::Status Restore();
  absl::Status OpenLogs();
  std::string OutPath(const std::string& name) const;
  absl::Status Train();
  std::string Resumable() const;
  // One epoch from position_; false when the run is to stop early.
  absl::StatusOr<bool> Epoch();
  bool Checkpointing() const;
  ProgressState EpochProgress(int64_t done, int64_t first_batch,
                              absl::Time start) const;
  absl::Status Step(const std::vector<int64_t>& order, Progress& progress);
  // With --diagnostics: the first step and every diagnostics_every-th after
  // it (the session's 1-based step count).
  bool Diagnosed(int64_t step) const;
  // The warnings of a diagnosed step: what appeared or cleared, as lines.
  void FollowWarnings(const StepRecord& record, Progress& progress);
  void SummaryWarnings() const;
  // The step's reply; nullopt when it was applied but its reply was lost.
  // A refused step (RESOURCE_EXHAUSTED) is sent again; after a failure that
  // leaves it unknown whether the step applied (UNAVAILABLE,
  // DEADLINE_EXCEEDED), the session's step count tells, before anything is
  // sent again, so that no step is applied twice.
  absl::StatusOr<std::optional<gradserve::v1::TrainStepResponse>> CallStep(
      const gradserve::v1::TrainStepRequest& request);
  absl::Status CheckDivergence(const StepRecord& record) const;
  // Loss and correct predictions over `data`, in EVAL mode.
  absl::Status Evaluate(const Dataset& data, double* loss, double* accuracy);
  absl::Status EndEpoch(absl::Duration took);
  void PrintEpoch(const EpochRecord& e) const;
  // The session's state with where the run goes on from: `batch` of
  // `epoch` (0-based; batch == steps_per_epoch_: only the epoch's
  // evaluation is left), its order drawn from `epoch_rng`; and the history.
  absl::Status Checkpoint(int64_t epoch, int64_t batch, uint64_t epoch_rng);
  absl::Status WritePlot() const;
  void Summary(absl::Duration took, int64_t steps) const;
  absl::Status Save();
  // The model's graph, or null for an ONNX model (its inputs are the
  // server's to know).
  const gradserve::v1::Graph* graph() const {
    return model_.has_graph() ? &model_.graph() : nullptr;
  }

  Context& c_;
  const TrainFlags& f_;
  // The model: a graph, or an ONNX model's bytes (imported by the server).
  gradserve::v1::CreateSessionRequest model_;
  Dataset train_;
  std::optional<Dataset> val_;
  FeedMap feeds_;
  std::string labels_;
  int64_t steps_per_epoch_ = 0;
  Schedule schedule_;
  std::unique_ptr<Client> client_;
  std::string session_;
  Position position_;
  int64_t step_ = 0;
  History history_;
  WarningTracker warnings_;
  std::unique_ptr<CsvLog> step_log_, epoch_log_;
  std::mt19937_64 random_{std::random_device{}()};
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_TRAINER_H_
