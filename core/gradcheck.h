// Analytic gradients against central finite differences, in float64.
#ifndef GRADSERVE_CORE_GRADCHECK_H_
#define GRADSERVE_CORE_GRADCHECK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compute.h"

namespace gradserve {

struct GradCheckOptions {
  double epsilon = 1e-6;
  // An element passes when |analytic - numeric| <= tolerance * (1 + |numeric|).
  double tolerance = 1e-6;
  // Elements checked per tensor, spread evenly over it; 0 = every element.
  int64_t max_elements = 0;
};

struct TensorGradCheck {
  std::string name;
  int64_t checked = 0;
  double max_abs_error = 0;
  // The element with the largest scaled error, and its two values.
  int64_t worst_index = -1;
  double worst_analytic = 0;
  double worst_numeric = 0;
  bool passed = true;
};

// Differentiates J = loss + sum over seeds of <seed, value> with respect to
// each `wrt` value (graph inputs, parameters or buffers), analytically and
// by central differences, both in float64.
absl::StatusOr<std::vector<TensorGradCheck>> CheckGradients(
    const GraphDef& graph, const ComputeArgs& args,
    const GradCheckOptions& options, const Limits& limits);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_GRADCHECK_H_
