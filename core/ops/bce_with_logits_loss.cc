// BCEWithLogitsLoss: binary cross-entropy of sigmoid(x) against t, computed
// from the logits x without forming sigmoid(x), so it stays finite for any x.
#include <algorithm>
#include <cmath>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

struct LogitBinaryCrossEntropy {
  static constexpr int64_t kFlopsPerElement = 8;  // exp, log1p, abs, max, 4
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = false;

  // max(x, 0) − x·t + log(1 + e^−|x|): equal to torch's
  // (1 − t)·x + m + log(e^−m + e^(−x−m)), m = max(−x, 0), without overflow.
  template <typename T>
  static T Loss(T x, T t) {
    return std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x)));
  }
  // sigmoid(x) − t; 1 / (1 + e^−x) tends to 0, not NaN, as x → −inf.
  template <typename T>
  static T GradA(T x, T t) {
    return T(1) / (T(1) + std::exp(-x)) - t;
  }
  template <typename T>
  static T GradB(T x) {
    return -x;
  }
};

REGISTER_OP(LossSchema(
    "BCEWithLogitsLoss",
    "reduction of −(t·log σ(x) + (1 − t)·log(1 − σ(x))), computed stably "
    "from logits x; x and target t of one shape; a scalar",
    "logits", PointwiseLossOp<LogitBinaryCrossEntropy>::Create));

}  // namespace
}  // namespace gradserve
