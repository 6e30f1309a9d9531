// Small helpers shared by op files.
#ifndef GRADSERVE_CORE_OPS_OP_UTIL_H_
#define GRADSERVE_CORE_OPS_OP_UTIL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/checked_math.h"
#include "core/op.h"

namespace gradserve {

// Calls f(float{}) or f(double{}) for a floating dtype: one templated loop
// serves the float32 path and the float64 reference path.
template <typename F>
decltype(auto) DispatchFloat(DType dtype, F&& f) {
  if (dtype == DType::kFloat64) return f(double{});
  return f(float{});
}

// Wraps an op constructed with its output metas as the factory result.
template <typename OpT>
absl::StatusOr<std::unique_ptr<Op>> MakeOp(std::unique_ptr<OpT> op) {
  return std::unique_ptr<Op>(std::move(op));
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_OP_UTIL_H_
