// The L1 family of pointwise losses over x − y (prediction minus target),
// as torch 1.13 computes them:
//   L1Loss        |x − y|; gradient sgn(x − y) (0 at 0, abs's);
//   SmoothL1Loss  z = |x − y|: 0.5·z²/beta below beta, else z − 0.5·beta;
//                 beta = 0 is L1Loss (torch takes l1_loss's path there);
//   HuberLoss     0.5·z² below delta, else delta·(z − 0.5·delta).
// Their target gradients are the prediction's negated, as torch's
// smooth_l1_loss_backward and huber_loss_backward give them.
#include <cmath>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

template <typename T>
T Sign(T d) {
  return static_cast<T>((d > T(0)) - (d < T(0)));
}

struct AbsoluteError : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 3;  // sub, abs, add
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = true;

  template <typename T>
  static T Loss(T a, T b) {
    return std::abs(a - b);
  }
  template <typename T>
  static T GradA(T a, T b) {
    return Sign(a - b);
  }
  template <typename T>
  static T GradB(T a, T b) {
    return -Sign(a - b);
  }
};

// Quadratic below a threshold, linear above: SmoothL1Loss (kSmooth, the
// quadratic part over beta) and HuberLoss (the linear part times delta).
template <bool kSmooth>
struct ThresholdedError : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 6;
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = true;

  absl::Status Init(const OpConfig& c) {
    const char* name = kSmooth ? "beta" : "delta";
    threshold = c.attrs().GetFloat(name);
    // torch: beta >= 0, delta > 0 (NaN fails both).
    if (kSmooth ? !(threshold >= 0) : !(threshold > 0)) {
      return c.attrs().Invalid(name, kSmooth ? ">= 0" : "> 0");
    }
    return absl::OkStatus();
  }

  template <typename T>
  T Loss(T a, T b) const {
    const T z = std::abs(a - b);
    const T t = static_cast<T>(threshold);
    if (kSmooth && threshold == 0) return z;
    if (kSmooth) return z < t ? T(0.5) * z * z / t : z - T(0.5) * t;
    return z < t ? T(0.5) * z * z : t * (z - T(0.5) * t);
  }
  // torch's kernels: ±1 (SmoothL1) or ±delta (Huber) at and beyond the
  // threshold, x/beta or x inside.
  template <typename T>
  T GradA(T a, T b) const {
    const T x = a - b;
    const T t = static_cast<T>(threshold);
    if (kSmooth && threshold == 0) return Sign(x);
    const T outer = kSmooth ? T(1) : t;
    if (x <= -t) return -outer;
    if (x >= t) return outer;
    return kSmooth ? x / t : x;
  }
  template <typename T>
  T GradB(T a, T b) const {
    return -GradA(a, b);
  }

  double threshold = 1.0;
};

REGISTER_OP(LossSchema(
    "L1Loss",
    "reduction of |prediction − target| over all elements; prediction and "
    "target of one shape",
    "prediction", PointwiseLossOp<AbsoluteError>::Create));

REGISTER_OP(LossSchema(
    "SmoothL1Loss",
    "reduction of z = |prediction − target|: 0.5·z²/beta where z < beta, "
    "else z − 0.5·beta (beta = 0: L1Loss); prediction and target of one "
    "shape",
    "prediction", PointwiseLossOp<ThresholdedError<true>>::Create, {},
    {{"beta", AttrType::kFloat, AttrValue(1.0),
      "where the loss turns from quadratic to linear; >= 0"}}));

REGISTER_OP(LossSchema(
    "HuberLoss",
    "reduction of z = |prediction − target|: 0.5·z² where z < delta, else "
    "delta·(z − 0.5·delta); prediction and target of one shape",
    "prediction", PointwiseLossOp<ThresholdedError<false>>::Create, {},
    {{"delta", AttrType::kFloat, AttrValue(1.0),
      "where the loss turns from quadratic to linear; > 0"}}));

}  // namespace
}  // namespace gradserve
