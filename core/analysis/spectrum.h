// Eigenvalues of symmetric operators: every eigenvalue of a dense matrix
// (Eigen's SelfAdjointEigenSolver: Householder tridiagonalisation and
// implicit QR), or the extreme ones of an operator known only by its
// products with vectors (Lanczos with full reorthogonalisation, written here
// because Eigen has no iterative eigensolver and ARPACK's reverse
// communication would need Fortran bindings for one loop).
#ifndef GRADSERVE_CORE_ANALYSIS_SPECTRUM_H_
#define GRADSERVE_CORE_ANALYSIS_SPECTRUM_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace gradserve {

// Every eigenvalue of the symmetric n×n matrix (row-major; symmetrised as
// (A + Aᵀ)/2 first), ascending.
std::vector<double> SymmetricEigenvalues(std::vector<double> matrix, int64_t n);

// y = A·x for a symmetric A; a non-OK status stops the iteration.
using LinearOperator = std::function<absl::Status(absl::Span<const double> x,
                                                  absl::Span<double> y)>;

struct LanczosOptions {
  int64_t k = 1;                 // how many at each end
  int64_t max_iterations = 300;  // at most n
  // A Ritz pair has converged when its residual ‖A·y − θ·y‖ is at most
  // tolerance · max|θ|.
  double tolerance = 1e-7;
  uint64_t seed = 0;  // the start vector
};

struct LanczosResult {
  std::vector<double> smallest;  // ascending
  std::vector<double> largest;   // descending
  int64_t iterations = 0;
  bool converged = false;
};

// The k smallest and k largest eigenvalues of the n-dimensional operator,
// by Lanczos iteration (one product per step, the basis kept and each new
// vector orthogonalised against all of it twice), stopping when the 2k
// wanted Ritz values have converged or after max_iterations.
absl::StatusOr<LanczosResult> Lanczos(int64_t n, const LinearOperator& apply,
                                      const LanczosOptions& options);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ANALYSIS_SPECTRUM_H_
