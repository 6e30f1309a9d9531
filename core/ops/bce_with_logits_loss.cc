// BCEWithLogitsLoss: binary cross-entropy of sigmoid(x) against t, computed
// from the logits x without forming sigmoid(x), so it stays finite for any x;
// weight and pos_weight as torch's.
#include <algorithm>
#include <cmath>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

struct LogitBinaryCrossEntropy : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 8;  // exp, log1p, abs, max, 4
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = false;
  static constexpr bool kPosWeight = true;

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

  // With pos_weight p, torch's (1 − t)·x + l·softplus(−x), l = (p − 1)·t + 1,
  // softplus(−x) = log(1 + e^−|x|) + max(−x, 0).
  template <typename T>
  static T SoftplusOfMinus(T x) {
    return std::log1p(std::exp(-std::abs(x))) + std::max(-x, T(0));
  }
  template <typename T>
  static T LossP(T x, T t, T p) {
    return (T(1) - t) * x + ((p - T(1)) * t + T(1)) * SoftplusOfMinus(x);
  }
  // (1 − t) − l·σ(−x).
  template <typename T>
  static T GradAP(T x, T t, T p) {
    return (T(1) - t) - ((p - T(1)) * t + T(1)) / (T(1) + std::exp(x));
  }
  template <typename T>
  static T GradBP(T x, T p) {
    return -x + (p - T(1)) * SoftplusOfMinus(x);
  }
  template <typename T>
  static T GradP(T x, T t, T) {
    return t * SoftplusOfMinus(x);
  }
};

REGISTER_OP(LossSchema(
    "BCEWithLogitsLoss",
    "reduction of −w·(p·t·log σ(x) + (1 − t)·log(1 − σ(x))), computed stably "
    "from logits x; x and target t of one shape, weight w and pos_weight p "
    "(both optional) broadcasting to it",
    "logits", PointwiseLossOp<LogitBinaryCrossEntropy>::Create,
    {{"weight", /*optional=*/true}, {"pos_weight", /*optional=*/true}}));

}  // namespace
}  // namespace gradserve
