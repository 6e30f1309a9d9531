#include "core/analysis/hessian.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/analysis/gradient_check.h"
#include "core/analysis/spectrum.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

double MaxAbs(absl::Span<const double> v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

bool AllFinite(absl::Span<const double> v) {
  return std::all_of(v.begin(), v.end(),
                     [](double x) { return std::isfinite(x); });
}

// Where a flat index lies: "'W1'[2, 0]".
std::string ElementName(const Objective& objective, int64_t flat) {
  const auto& offsets = objective.offsets();
  const size_t t = std::upper_bound(offsets.begin(), offsets.end(), flat) -
                   offsets.begin() - 1;
  std::vector<int64_t> index =
      MultiIndex(flat - offsets[t], objective.shapes()[t]);
  return absl::StrCat("'", objective.wrt()[t], "'", ShapeToString(index));
}

absl::Status NonFiniteHessian(const Objective& objective, int64_t column) {
  return absl::InvalidArgumentError(absl::StrCat(
      "the Hessian is not finite at this point: the gradient is NaN or "
      "infinite next to it (found along ",
      ElementName(objective, column), ")"));
}

// The whole Hessian, one product with a unit vector per column.
absl::StatusOr<std::vector<double>> FullHessian(const Objective& objective) {
  const int64_t n = objective.dimension();
  std::vector<double> hessian(static_cast<size_t>(n * n));
  std::vector<double> unit(n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    unit[i] = 1;
    ASSIGN_OR_RETURN(std::vector<double> column,
                     HessianVectorProduct(objective, unit));
    unit[i] = 0;
    if (!AllFinite(column)) return NonFiniteHessian(objective, i);
    std::copy(column.begin(), column.end(), hessian.begin() + i * n);
  }
  return hessian;
}

absl::Status ExactSpectrum(const Objective& objective, int64_t k,
                           HessianSpectrum& out) {
  ASSIGN_OR_RETURN(std::vector<double> hessian, FullHessian(objective));
  const int64_t n = objective.dimension();
  const std::vector<double> all = SymmetricEigenvalues(std::move(hessian), n);
  out.smallest.assign(all.begin(), all.begin() + k);
  out.largest.assign(all.rbegin(), all.rbegin() + k);
  out.exact = true;
  out.critical_point = CriticalPoint(all, out.gradient_norm, out.loss);
  return absl::OkStatus();
}

absl::Status LanczosSpectrum(const Objective& objective,
                             const SpectrumPlan& plan, HessianSpectrum& out) {
  LanczosOptions options;
  options.k = plan.k;
  options.max_iterations = plan.lanczos_iterations;
  options.seed = objective.args().seed;
  auto apply = [&](absl::Span<const double> x,
                   absl::Span<double> y) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<double> hx,
                     HessianVectorProduct(objective, x));
    if (!AllFinite(hx)) {
      return absl::InvalidArgumentError(
          "the Hessian is not finite at this point: the gradient is NaN or "
          "infinite next to it");
    }
    std::copy(hx.begin(), hx.end(), y.begin());
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(LanczosResult r,
                   Lanczos(objective.dimension(), apply, options));
  out.smallest = std::move(r.smallest);
  out.largest = std::move(r.largest);
  out.iterations = r.iterations;
  out.converged = r.converged;
  std::vector<double> ends = out.smallest;
  ends.insert(ends.end(), out.largest.begin(), out.largest.end());
  out.critical_point = CriticalPoint(ends, out.gradient_norm, out.loss);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<double>> HessianVectorProduct(
    const Objective& objective, absl::Span<const double> v) {
  const int64_t n = objective.dimension();
  std::vector<double> product(n, 0.0);
  const double v_max = MaxAbs(v);
  if (v_max == 0) return product;
  const std::vector<double>& theta = objective.point();
  const double h = std::cbrt(std::numeric_limits<double>::epsilon()) *
                   (1 + MaxAbs(theta)) / v_max;
  std::vector<double> plus(n), minus(n), g_minus(n);
  for (int64_t i = 0; i < n; ++i) {
    plus[i] = theta[i] + h * v[i];
    minus[i] = theta[i] - h * v[i];
  }
  RETURN_IF_ERROR(objective.Gradient(plus, absl::MakeSpan(product)).status());
  RETURN_IF_ERROR(objective.Gradient(minus, absl::MakeSpan(g_minus)).status());
  for (int64_t i = 0; i < n; ++i) {
    product[i] = (product[i] - g_minus[i]) / (2 * h);
  }
  return product;
}

absl::StatusOr<std::map<std::string, Tensor>> HessianVectorProduct(
    const Objective& objective, const TensorMap& vector) {
  ASSIGN_OR_RETURN(std::vector<double> v, objective.Flatten(vector, "vector"));
  for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("vector: element ", ElementName(objective, i), " is ",
                       v[i], "; the vector must be finite"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<double> product,
                   HessianVectorProduct(objective, v));
  return objective.Unflatten(product, DType::kFloat32);
}

absl::StatusOr<SpectrumPlan> PlanSpectrum(int64_t n, int64_t k,
                                          const Limits& limits) {
  if (k < 1 || k > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("k = ", k, ": must be between 1 and n = ", n,
                     ", the number of scalars in wrt"));
  }
  SpectrumPlan plan{n, k, n <= kMaxExactHessian, 0, 0};
  constexpr int64_t kDouble = sizeof(double);
  if (plan.exact) {
    // The Hessian and the eigensolver's copy of it.
    plan.bytes = 2 * n * n * kDouble;
  } else {
    plan.lanczos_iterations = std::min(n, 2 * k + 300);
    plan.lanczos_iterations = std::min(
        plan.lanczos_iterations, limits.max_request_bytes / (n * kDouble));
    plan.bytes = plan.lanczos_iterations * n * kDouble;
  }
  const int64_t fewest = std::min(n, 2 * k + 20);
  const int64_t needed = plan.exact ? plan.bytes : fewest * n * kDouble;
  if (needed > limits.max_request_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "HessianEigenvalues over n = ", n, " scalars needs ", needed,
        " bytes for ", plan.exact ? "the whole Hessian" : "its Lanczos basis",
        ", over the request limit of ", limits.max_request_bytes,
        " bytes; ask for fewer wrt values",
        plan.exact ? "" : " or a smaller k"));
  }
  return plan;
}

absl::StatusOr<HessianSpectrum> HessianEigenvalues(const Objective& objective,
                                                   const SpectrumPlan& plan) {
  HessianSpectrum out;
  std::vector<double> gradient(objective.dimension());
  ASSIGN_OR_RETURN(out.loss, objective.Gradient(objective.point(),
                                                absl::MakeSpan(gradient)));
  if (!std::isfinite(out.loss)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the loss is ", out.loss, " at this point; its Hessian is undefined"));
  }
  double squares = 0;
  for (double g : gradient) squares += g * g;
  out.gradient_norm = std::sqrt(squares);
  if (plan.exact) {
    RETURN_IF_ERROR(ExactSpectrum(objective, plan.k, out));
  } else {
    RETURN_IF_ERROR(LanczosSpectrum(objective, plan, out));
  }
  return out;
}

std::string CriticalPoint(absl::Span<const double> eigenvalues,
                          double gradient_norm, double loss) {
  if (!(gradient_norm <= 1e-5 * std::max(1.0, std::abs(loss)))) {
    return "not critical";
  }
  const double zero = 1e-6 * MaxAbs(eigenvalues);
  bool positive = false, negative = false, zeros = false;
  for (double lambda : eigenvalues) {
    positive = positive || lambda > zero;
    negative = negative || lambda < -zero;
    zeros = zeros || std::abs(lambda) <= zero;
  }
  if (positive && negative) return "saddle";
  if (zeros) return "degenerate";
  return positive ? "minimum" : "maximum";
}

}  // namespace gradserve
