// Small helpers shared by op files.
#ifndef GRADSERVE_CORE_OPS_OP_UTIL_H_
#define GRADSERVE_CORE_OPS_OP_UTIL_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "core/attributes.h"
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

// DispatchFloat, and f(int64_t{}) for int64: loops that also serve int64
// tensors (ops that keep int64 as torch does).
template <typename F>
decltype(auto) DispatchNumeric(DType dtype, F&& f) {
  if (dtype == DType::kInt64) return f(int64_t{});
  return DispatchFloat(dtype, std::forward<F>(f));
}

// An input that is float (of the request's float dtype) or int64.
inline absl::Status ExpectFloatOrInt64(const OpConfig& c, int i) {
  return IsFloating(c.input(i).dtype) ? c.ExpectFloat(i) : c.ExpectInt64(i);
}

// a + b saturating at INT64_MAX (byte counts).
inline int64_t SumSat(int64_t a, int64_t b) {
  return CheckedAdd(a, b).value_or(std::numeric_limits<int64_t>::max());
}

// Whether every present input is int64 (an op that then computes in int64,
// as torch's integer kernels).
inline bool AllInt64(const OpConfig& c) {
  for (int i = 0; i < c.num_inputs(); ++i) {
    if (c.has_input(i) && c.input(i).dtype != DType::kInt64) return false;
  }
  return true;
}

// torch's dtype= of softmax, log_softmax, sum and mean: "" (the input's) or
// a float dtype. A request runs in one float dtype (float64 when it sends
// float64 tensors), so the attribute must name that one.
inline AttrSpec DtypeAttr() {
  return {"dtype", AttrType::kString, AttrValue(std::string()),
          "\"\", \"float32\" or \"float64\": the dtype to compute in; "
          "it must be the request's (send float64 tensors for float64)"};
}

inline absl::Status CheckDtypeAttr(const OpConfig& c) {
  const std::string& dtype = c.attrs().GetString("dtype");
  if (dtype.empty() || dtype == DTypeName(c.float_dtype())) {
    return absl::OkStatus();
  }
  if (dtype != "float32" && dtype != "float64") {
    return c.attrs().Invalid("dtype", "\"\", \"float32\" or \"float64\"");
  }
  return c.Unsupported("attribute 'dtype' is \"", dtype,
                       "\" but the request runs in ",
                       DTypeName(c.float_dtype()), ": send ",
                       dtype == "float64" ? "DATA_TYPE_FLOAT64" : "float32",
                       " tensors to compute in ", dtype);
}

// Wraps an op constructed with its output metas as the factory result.
template <typename OpT>
absl::StatusOr<std::unique_ptr<Op>> MakeOp(std::unique_ptr<OpT> op) {
  return std::unique_ptr<Op>(std::move(op));
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_OP_UTIL_H_
