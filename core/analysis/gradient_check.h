// Gradient checking: the analytic gradients of an Objective (the float64
// reference path) against central finite differences in float64, as
// torch.autograd.gradcheck checks them, and the float32 (oneDNN) path's
// gradients against the float64 ones.
#ifndef GRADSERVE_CORE_ANALYSIS_GRADIENT_CHECK_H_
#define GRADSERVE_CORE_ANALYSIS_GRADIENT_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/analysis/objective.h"

namespace gradserve {

struct GradCheckOptions {
  // torch.autograd.gradcheck's defaults. An element passes when
  // |analytic - numeric| <= atol + rtol * |numeric|.
  double epsilon = 1e-6;
  double rtol = 1e-3;
  double atol = 1e-5;
  // Elements checked per tensor: 0 = all, else a random subset of that many
  // drawn from the request's seed.
  int64_t max_elements_per_tensor = 0;
  // The float32 path against the float64 analytic gradient, every element:
  // |float32 - float64| <= atol + float32_rtol * |float64|.
  bool check_float32 = true;
  double float32_rtol = 1e-3;
};

struct TensorCheck {
  std::string name;
  int64_t elements_checked = 0;
  double max_abs_error = 0;
  // |analytic - numeric| / |numeric|; infinite where numeric is 0 and
  // analytic is not.
  double max_rel_error = 0;
  // The element furthest past (or closest to) its tolerance: its multi-index,
  // the float64 analytic value and the central difference.
  std::vector<int64_t> worst_index;
  double analytic = 0;
  double numeric = 0;
  bool numeric_passed = true;
  // The float32 path's gradient against the float64 one.
  double float32_max_abs_error = 0;
  std::vector<int64_t> float32_worst_index;
  double float32_value = 0;
  bool float32_passed = true;
  bool passed = true;  // both
};

struct GradientCheck {
  std::vector<TensorCheck> tensors;  // in wrt order
  bool passed = true;
};

absl::StatusOr<GradientCheck> CheckGradients(const Objective& objective,
                                             const GradCheckOptions& options);
// Over a graph with its values (tests, one-shot use).
absl::StatusOr<GradientCheck> CheckGradients(const GraphDef& graph,
                                             const ComputeArgs& args,
                                             const GradCheckOptions& options,
                                             const Limits& limits);

// The row-major multi-index of element `flat` of `shape`.
std::vector<int64_t> MultiIndex(int64_t flat, const Shape& shape);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ANALYSIS_GRADIENT_CHECK_H_
