#include "client/train_plan.h"

#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace gradserve::client {

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Rng::Below(uint64_t n) {
  // Reject the draws below 2^64 mod n, so that every residue is as likely.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = Next();
    if (r >= threshold) return r % n;
  }
}

std::vector<int64_t> Permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[i], order[rng.Below(static_cast<uint64_t>(i) + 1)]);
  }
  return order;
}

absl::StatusOr<Schedule::Kind> ParseScheduleKind(const std::string& name) {
  if (name == "constant") return Schedule::Kind::kConstant;
  if (name == "step") return Schedule::Kind::kStep;
  if (name == "cosine") return Schedule::Kind::kCosine;
  return absl::InvalidArgumentError(absl::StrCat(
      "--lr-schedule must be constant, step or cosine, got '", name, "'"));
}

double LearningRate(const Schedule& s, int64_t epoch, int64_t step) {
  switch (s.kind) {
    case Schedule::Kind::kConstant:
      return s.lr;
    case Schedule::Kind::kStep:
      return s.lr * std::pow(s.gamma,
                             static_cast<double>(
                                 epoch / std::max<int64_t>(s.step_epochs, 1)));
    case Schedule::Kind::kCosine: {
      const double t = static_cast<double>(step) /
                       static_cast<double>(std::max<int64_t>(s.total_steps, 1));
      return s.min_lr + (s.lr - s.min_lr) * (1 + std::cos(M_PI * t)) / 2;
    }
  }
  return s.lr;
}

int64_t BatchCount(int64_t n, int64_t batch) {
  return batch <= 0 ? 0 : (n + batch - 1) / batch;
}

}  // namespace gradserve::client
