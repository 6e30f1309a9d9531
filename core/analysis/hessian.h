// Second order: Hessian-vector products of an Objective and the extreme
// eigenvalues of its Hessian, with what they say about the point.
//
// H·v is a central difference of float64 gradients (the reference path's
// exact reverse mode):
//   H·v ≈ (∇J(θ + h·v) − ∇J(θ − h·v)) / 2h,   h = ε^(1/3) · (1 + ‖θ‖∞) / ‖v‖∞
// with ε the float64 epsilon, so the step is ~6e-6 of θ's scale whatever
// v's: truncation error O(h²·∇³J) and rounding O(ε·|∇J|/h) balance at about
// 1e-10 relative for smooth functions. Where an op has a kink (ReLU at 0, a
// max-pool tie) within h·|v| of the point, the difference sees the kink and
// autograd does not.
#ifndef GRADSERVE_CORE_ANALYSIS_HESSIAN_H_
#define GRADSERVE_CORE_ANALYSIS_HESSIAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/analysis/objective.h"

namespace gradserve {

// H·v at the objective's point; v is flat, in wrt order.
absl::StatusOr<std::vector<double>> HessianVectorProduct(
    const Objective& objective, absl::Span<const double> v);
// The same for one tensor per wrt value, by name; float32 results.
absl::StatusOr<std::map<std::string, Tensor>> HessianVectorProduct(
    const Objective& objective, const TensorMap& vector);

// Up to this many scalars in wrt, the Hessian is built whole (n products
// with unit vectors) and all its eigenvalues computed; above, Lanczos.
inline constexpr int64_t kMaxExactHessian = 4096;

// How HessianEigenvalues will go for n scalars and k eigenvalues at each
// end, and the bytes its work space takes (the Hessian, or the Lanczos
// basis), planned before anything runs.
struct SpectrumPlan {
  int64_t n = 0;
  int64_t k = 0;
  bool exact = false;
  int64_t lanczos_iterations = 0;  // the most
  int64_t bytes = 0;
};
// INVALID_ARGUMENT unless 1 <= k <= n; RESOURCE_EXHAUSTED when the work
// space would exceed limits.max_request_bytes.
absl::StatusOr<SpectrumPlan> PlanSpectrum(int64_t n, int64_t k,
                                          const Limits& limits);

struct HessianSpectrum {
  std::vector<double> largest;   // descending
  std::vector<double> smallest;  // ascending
  bool exact = false;
  int64_t iterations = 0;  // Lanczos steps (0 on the exact path)
  bool converged = true;
  double gradient_norm = 0;
  double loss = 0;  // J at the point
  std::string critical_point;
};

absl::StatusOr<HessianSpectrum> HessianEigenvalues(const Objective& objective,
                                                   const SpectrumPlan& plan);

// The verdict of API.md: "not critical" when gradient_norm > 1e-5 ·
// max(1, |loss|); else, with an eigenvalue zero when |λ| <= 1e-6 · max|λ|,
// "saddle" (both signs), "degenerate" (a zero, no sign change), "minimum"
// (all > 0) or "maximum" (all < 0). `eigenvalues` are all of them, or the
// extreme ones (the sign rules only need those).
std::string CriticalPoint(absl::Span<const double> eigenvalues,
                          double gradient_norm, double loss);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ANALYSIS_HESSIAN_H_
