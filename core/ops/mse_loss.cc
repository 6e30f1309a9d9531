// MSELoss: reduction over (prediction − target)², the two of one shape, with
// gradients for both (a target may come from the graph too).

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

struct SquaredError : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 3;  // sub, mul, add
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = true;

  template <typename T>
  static T Loss(T a, T b) {
    const T d = a - b;
    return d * d;
  }
  template <typename T>
  static T GradA(T a, T b) {
    return T(2) * (a - b);
  }
  template <typename T>
  static T GradB(T a, T b) {
    return T(2) * (b - a);
  }
};

REGISTER_OP(LossSchema(
    "MSELoss",
    "reduction of (prediction − target)² over all elements; prediction and "
    "target of one shape",
    "prediction", PointwiseLossOp<SquaredError>::Create));

}  // namespace
}  // namespace gradserve
