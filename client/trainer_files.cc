// Trainer's files: checkpoints and --resume, the metrics CSVs, the plot and
// --save.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/atomic_file.h"
#include "client/graph_file.h"
#include "client/retry.h"
#include "client/trainer.h"
#include "core/status_macros.h"

namespace gradserve::client {

namespace pb = ::gradserve::v1;

// Identifies what decides the run's course, so that a checkpoint resumes
// only the run it came from.
uint64_t Trainer::RunFingerprint() const {
  pb::Optimizer optimizer = OptimizerOf(f_);
  std::string id = absl::StrCat(
      graph() ? DeterministicBytes(*graph()) : Fingerprint(model_.onnx_model()),
      DeterministicBytes(optimizer), "\n", f_.loss, " batch=", f_.batch_size,
      " shuffle=", f_.shuffle, " seed=", f_.seed, " split=", f_.val_split,
      " schedule=", f_.schedule, " ", f_.lr_step_epochs, " ", f_.lr_gamma, " ",
      f_.lr_min, " lr=", schedule_.lr, " samples=", train_.samples);
  if (schedule_.kind == Schedule::Kind::kCosine) {
    absl::StrAppend(&id, " epochs=", f_.epochs);
  }
  for (const auto& [input, array] : feeds_) {
    absl::StrAppend(&id, " ", input, "=", array, ":",
                    Fingerprint(train_.arrays.at(array).data()));
  }
  uint64_t hash = 0;
  (void)absl::SimpleHexAtoi(Fingerprint(id), &hash);
  return hash;
}

absl::Status Trainer::Restore() {
  ASSIGN_OR_RETURN(Arrays arrays, ReadNpz(f_.resume));
  auto get = [&](const std::string& key) -> absl::StatusOr<int64_t> {
    auto it = arrays.find(key);
    if (it == arrays.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          f_.resume, ": no '", key, "': not a gradctl train checkpoint"));
    }
    return ScalarInt64(it->second, absl::StrCat(f_.resume, ": ", key));
  };
  ASSIGN_OR_RETURN(int64_t run, get("train/run"));
  if (static_cast<uint64_t>(run) != RunFingerprint()) {
    return absl::FailedPreconditionError(absl::StrCat(
        f_.resume,
        " is a checkpoint of another run: the graph, data, loss, batch "
        "size, order, optimizer or schedule differ from this command's"));
  }
  ASSIGN_OR_RETURN(position_.epoch, get("train/epoch"));
  ASSIGN_OR_RETURN(position_.batch, get("train/batch"));
  ASSIGN_OR_RETURN(int64_t rng, get("train/rng"));
  position_.epoch_rng = static_cast<uint64_t>(rng);
  ASSIGN_OR_RETURN(history_, HistoryFromArrays(arrays, f_.resume));
  // The warnings in force at the checkpoint are not told again.
  for (const StepRecord& s : history_.steps) {
    if (s.diagnosed) (void)warnings_.Observe(s.step, s.warnings);
  }
  ASSIGN_OR_RETURN(pb::SetParametersRequest set,
                   RestoreRequest(arrays, session_, false, f_.resume));
  RETURN_IF_ERROR(client_->SetParameters(set).status());
  step_ = set.step();
  c_.out << "resumed from " << f_.resume << " at step " << step_ << " (epoch "
         << position_.epoch + 1 << ", batch " << position_.batch << ")\n";
  return absl::OkStatus();
}

absl::Status Trainer::OpenLogs() {
  if (f_.out.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(MakeDirectories(f_.out));
  std::vector<std::string> steps, epochs;
  for (const StepRecord& s : history_.steps) steps.push_back(StepCsvRow(s));
  for (const EpochRecord& e : history_.epochs) {
    epochs.push_back(EpochCsvRow(e));
  }
  ASSIGN_OR_RETURN(
      step_log_, CsvLog::Create(OutPath("steps.csv"), StepCsvHeader(), steps));
  ASSIGN_OR_RETURN(epoch_log_, CsvLog::Create(OutPath("epochs.csv"),
                                              EpochCsvHeader(), epochs));
  return absl::OkStatus();
}

std::string Trainer::OutPath(const std::string& name) const {
  return (std::filesystem::path(f_.out) / name).string();
}

// The session's state with where the run goes on from: `batch` of
// `epoch` (0-based; batch == steps_per_epoch_: only the epoch's
// evaluation is left), its order drawn from `epoch_rng`; and the history.
absl::Status Trainer::Checkpoint(int64_t epoch, int64_t batch,
                                 uint64_t epoch_rng) {
  pb::GetParametersRequest get;
  get.set_session_id(session_);
  get.set_include_optimizer_state(true);
  ASSIGN_OR_RETURN(pb::GetParametersResponse state,
                   client_->GetParameters(get));
  Arrays arrays = SessionArrays(state);
  arrays["train/run"] = Int64Scalar(static_cast<int64_t>(RunFingerprint()));
  arrays["train/epoch"] = Int64Scalar(epoch);
  arrays["train/batch"] = Int64Scalar(batch);
  arrays["train/rng"] = Int64Scalar(static_cast<int64_t>(epoch_rng));
  AddHistoryArrays(history_, &arrays);
  return WriteNpz(OutPath("checkpoint.npz"), arrays);
}

absl::Status Trainer::WritePlot() const {
  if (f_.out.empty()) return absl::OkStatus();
  return WriteFileAtomically(
      OutPath("curves.svg"),
      TrainingCurvesSvg(
          history_, steps_per_epoch_,
          absl::StrCat("gradctl train ",
                       std::filesystem::path(f_.graph).filename().string())));
}

void Trainer::Summary(absl::Duration took, int64_t steps) const {
  const double s = std::max(absl::ToDoubleSeconds(took), 1e-9);
  int64_t samples = 0;
  const size_t recent = std::min<size_t>(steps, history_.steps.size());
  for (size_t i = history_.steps.size() - recent; i < history_.steps.size();
       ++i) {
    samples += history_.steps[i].samples;
  }
  std::string line = absl::StrFormat(
      "trained %d steps in %.2f s: %.1f steps/s, %.0f samples/s", steps, s,
      steps / s, samples / s);
  if (!history_.epochs.empty()) {
    const EpochRecord& e = history_.epochs.back();
    if (!std::isnan(e.val_loss)) {
      absl::StrAppendFormat(&line, "; final val loss %.4f", e.val_loss);
    }
    if (!std::isnan(e.val_accuracy)) {
      absl::StrAppendFormat(&line, ", accuracy %.2f%%", 100 * e.val_accuracy);
    }
  }
  c_.out << line << "\n";
  SummaryWarnings();
  if (!f_.out.empty()) {
    c_.out << "metrics: " << OutPath("steps.csv") << ", "
           << OutPath("epochs.csv") << "; plot: " << OutPath("curves.svg")
           << "\n";
  }
}

void Trainer::SummaryWarnings() const {
  if (!f_.diagnostics || warnings_.last_step() == 0) return;
  const auto& active = warnings_.active();
  c_.out << "diagnostics at step " << warnings_.last_step()
         << " (the last diagnosed): ";
  if (active.empty()) {
    c_.out << "no warnings\n";
    return;
  }
  c_.out << active.size() << " warning(s)\n";
  for (const WarningTracker::Active& a : active) {
    c_.out << "  " << a.text << " (since step " << a.since << ")\n";
  }
}

absl::Status Trainer::Save() {
  if (f_.save.empty()) return absl::OkStatus();
  pb::GetParametersRequest get;
  get.set_session_id(session_);
  ASSIGN_OR_RETURN(pb::GetParametersResponse state,
                   client_->GetParameters(get));
  RETURN_IF_ERROR(WriteNpz(f_.save, SessionArrays(state)));
  c_.out << "saved the parameters at step " << state.step() << " to " << f_.save
         << "\n";
  return absl::OkStatus();
}

}  // namespace gradserve::client
