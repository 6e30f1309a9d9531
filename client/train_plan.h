// The order and learning rates of a training run, as pure functions of its
// flags and position, so that a run resumed from a checkpoint takes exactly
// the batches and rates an unbroken run takes.
#ifndef GRADSERVE_CLIENT_TRAIN_PLAN_H_
#define GRADSERVE_CLIENT_TRAIN_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gradserve::client {

// SplitMix64: a small generator whose whole state is one number (saved in
// checkpoints), the same on every platform (std::shuffle's draws are not).
class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state) {}
  uint64_t Next();
  // Uniform in [0, n), unbiased (n > 0).
  uint64_t Below(uint64_t n);
  uint64_t state() const { return state_; }

 private:
  uint64_t state_;
};

// 0..n-1 shuffled by Fisher-Yates with `rng`.
std::vector<int64_t> Permutation(int64_t n, Rng& rng);

struct Schedule {
  enum class Kind { kConstant, kStep, kCosine };
  Kind kind = Kind::kConstant;
  double lr = 0;
  // kStep: torch.optim.lr_scheduler.StepLR stepped once an epoch:
  // lr * gamma^floor(epoch / step_epochs).
  int64_t step_epochs = 1;
  double gamma = 0.1;
  // kCosine: CosineAnnealingLR over all steps of the run (T_max), stepped
  // every step: min_lr + (lr - min_lr) (1 + cos(pi step / total_steps)) / 2.
  double min_lr = 0;
  int64_t total_steps = 1;
};

absl::StatusOr<Schedule::Kind> ParseScheduleKind(const std::string& name);

// The learning rate of the step numbered `step` (0-based) in `epoch`
// (0-based).
double LearningRate(const Schedule& schedule, int64_t epoch, int64_t step);

// Batches of `batch` samples out of `n` (the last one may be short).
int64_t BatchCount(int64_t n, int64_t batch);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_TRAIN_PLAN_H_
