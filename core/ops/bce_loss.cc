// BCELoss: binary cross-entropy of probabilities p in [0, 1] against targets
// t, as torch 1.13 computes it: logs clamped at −100, so that p = 0 or 1
// gives a finite loss, and the gradient's denominator held at 1e-12.
#include <algorithm>
#include <cmath>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

// torch's clamp of log p and log(1 − p) (torch 1.13 takes log(1 − p), not
// log1p(−p); the two differ in the last bits for small p).
template <typename T>
T ClampedLog(T x) {
  return std::max(std::log(x), T(-100));
}

struct BinaryCrossEntropy : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 8;  // 2 logs, 2 max, 4 arith
  static constexpr bool kFirstInputIsProbability = true;
  static constexpr bool kTargetGradReadsTarget = false;

  // −(t·log p + (1 − t)·log(1 − p)), in torch's arrangement.
  template <typename T>
  static T Loss(T p, T t) {
    return (t - T(1)) * ClampedLog(T(1) - p) - t * ClampedLog(p);
  }
  // torch's binary_cross_entropy_backward: (p − t) / max((1 − p)·p, ε),
  // where torch 1.13's ε is the float 1e-12f, also in float64
  // (9.99999996e-13, which shows in gradients near p = 0 or 1).
  template <typename T>
  static T GradA(T p, T t) {
    return (p - t) / std::max((T(1) - p) * p, static_cast<T>(1e-12f));
  }
  // −(log p − log(1 − p)) with the forward's clamps: the derivative of the
  // loss as Forward computes it. torch 1.13 leaves the clamps out here and
  // gives ±inf at p = 0 or 1; inside (0, 1) the two agree.
  template <typename T>
  static T GradB(T p) {
    return ClampedLog(T(1) - p) - ClampedLog(p);
  }
};

REGISTER_OP(LossSchema(
    "BCELoss",
    "reduction of −w·(t·log p + (1 − t)·log(1 − p)), logs clamped at −100; "
    "probabilities p in [0, 1] and target t of one shape, weight w "
    "(optional) broadcasting to it",
    "probabilities", PointwiseLossOp<BinaryCrossEntropy>::Create,
    {{"weight", /*optional=*/true}}));

}  // namespace
}  // namespace gradserve
