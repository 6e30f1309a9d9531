#include "core/analysis/spectrum.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "Eigen/Eigenvalues"
#include "core/status_macros.h"

namespace gradserve {
namespace {

double Dot(const double* a, const double* b, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

double Norm(const std::vector<double>& v) {
  return std::sqrt(Dot(v.data(), v.data(), static_cast<int64_t>(v.size())));
}

// w minus its components along the first `rows` basis vectors, twice
// (classical Gram-Schmidt twice keeps the basis orthogonal to rounding).
void Orthogonalize(std::vector<double>& w, const std::vector<double>& basis,
                   int64_t rows) {
  const int64_t n = static_cast<int64_t>(w.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t r = 0; r < rows; ++r) {
      const double* q = basis.data() + r * n;
      const double c = Dot(q, w.data(), n);
      for (int64_t i = 0; i < n; ++i) w[i] -= c * q[i];
    }
  }
}

// A random unit vector orthogonal to the basis; false when the basis
// already spans everything.
bool FreshDirection(std::vector<double>& q, const std::vector<double>& basis,
                    int64_t rows, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  for (double& x : q) x = normal(rng);
  Orthogonalize(q, basis, rows);
  const double norm = Norm(q);
  if (!(norm > 1e-8)) return false;
  for (double& x : q) x /= norm;
  return true;
}

// Ritz values of the tridiagonal matrix so far, and whether the wanted ones
// (k at each end) have converged: residual |b · s_last| per Ritz vector.
bool RitzValues(const std::vector<double>& alpha,
                const std::vector<double>& beta, double b,
                const LanczosOptions& o, int64_t n, LanczosResult& result) {
  const int64_t steps = static_cast<int64_t>(alpha.size());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver;
  solver.computeFromTridiagonal(
      Eigen::Map<const Eigen::VectorXd>(alpha.data(), steps),
      Eigen::Map<const Eigen::VectorXd>(beta.data(), steps - 1),
      Eigen::ComputeEigenvectors);
  const Eigen::VectorXd& theta = solver.eigenvalues();  // ascending
  const double scale = std::max(std::abs(theta[0]), std::abs(theta[steps - 1]));
  const int64_t k = std::min(o.k, steps);
  bool converged = steps >= std::min(n, 2 * o.k);
  for (int64_t i = 0; i < steps; ++i) {
    if (i >= k && i < steps - k) continue;
    const double residual = std::abs(b * solver.eigenvectors()(steps - 1, i));
    converged = converged && residual <= o.tolerance * scale;
  }
  result.smallest.assign(theta.data(), theta.data() + k);
  result.largest.assign(theta.data() + steps - k, theta.data() + steps);
  std::reverse(result.largest.begin(), result.largest.end());
  result.iterations = steps;
  result.converged = converged || steps == n;
  return result.converged;
}

}  // namespace

std::vector<double> SymmetricEigenvalues(std::vector<double> matrix,
                                         int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) {
      const double mean = (matrix[i * n + j] + matrix[j * n + i]) / 2;
      matrix[i * n + j] = matrix[j * n + i] = mean;
    }
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(
      Eigen::Map<const Eigen::MatrixXd>(matrix.data(), n, n),
      Eigen::EigenvaluesOnly);
  const Eigen::VectorXd& values = solver.eigenvalues();
  return {values.data(), values.data() + n};
}

absl::StatusOr<LanczosResult> Lanczos(int64_t n, const LinearOperator& apply,
                                      const LanczosOptions& o) {
  const int64_t m = std::min(n, o.max_iterations);
  std::vector<double> basis;
  basis.reserve(static_cast<size_t>(m * n));
  std::vector<double> alpha, beta, q(n), w(n);
  std::mt19937_64 rng(o.seed);
  FreshDirection(q, basis, 0, rng);
  LanczosResult result;
  int64_t next_check = std::min(m, 2 * o.k + 10);
  for (int64_t steps = 1; steps <= m; ++steps) {
    basis.insert(basis.end(), q.begin(), q.end());
    RETURN_IF_ERROR(apply(q, absl::MakeSpan(w)));
    const double applied = Norm(w);
    alpha.push_back(Dot(q.data(), w.data(), n));
    Orthogonalize(w, basis, steps);
    const double b = Norm(w);
    const bool breakdown = !(b > 1e-10 * applied);
    if ((steps >= next_check || steps == m || breakdown) &&
        RitzValues(alpha, beta, breakdown ? 0 : b, o, n, result)) {
      return result;
    }
    if (steps >= next_check)
      next_check = steps + std::max<int64_t>(10, steps / 10);
    if (steps == m) break;
    // An invariant subspace: go on in a direction it does not contain.
    if (breakdown) {
      if (!FreshDirection(q, basis, steps, rng)) break;
      beta.push_back(0);
    } else {
      for (int64_t i = 0; i < n; ++i) q[i] = w[i] / b;
      beta.push_back(b);
    }
  }
  return result;
}

}  // namespace gradserve
