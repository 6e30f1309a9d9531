#include "core/analysis/gradient_check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status CheckOptions(const GradCheckOptions& o) {
  if (!(o.epsilon > 0) || !std::isfinite(o.epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "epsilon must be a positive finite step, got ", o.epsilon));
  }
  for (auto [field, value] : {std::pair{"rtol", o.rtol}, {"atol", o.atol}}) {
    if (!(value >= 0) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " must be finite and >= 0, got ", value));
    }
  }
  if (o.max_elements_per_tensor < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_elements_per_tensor must be >= 0 (0 = all), got ",
                     o.max_elements_per_tensor));
  }
  return absl::OkStatus();
}

// The elements of a tensor of n to check, ascending: all of them, or `max`
// distinct ones drawn from `rng` (Floyd's algorithm: no n-sized state).
std::vector<int64_t> ElementsToCheck(int64_t n, int64_t max,
                                     std::mt19937_64& rng) {
  std::vector<int64_t> chosen;
  if (max == 0 || max >= n) {
    chosen.resize(n);
    std::iota(chosen.begin(), chosen.end(), int64_t{0});
    return chosen;
  }
  std::set<int64_t> drawn;
  for (int64_t j = n - max; j < n; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    if (!drawn.insert(t).second) drawn.insert(j);
  }
  return {drawn.begin(), drawn.end()};
}

// How far an error is past its tolerance (above 1 fails); NaN counts as
// infinitely far.
double Excess(double error, double tolerance) {
  if (std::isnan(error)) return kInf;
  if (tolerance > 0) return error / tolerance;
  return error > 0 ? kInf : 0;
}

// max that keeps a NaN once it has seen one.
void KeepMax(double& max, double x) {
  if (std::isnan(x) || x > max) max = x;
}

double RelativeError(double error, double numeric) {
  if (numeric != 0) return error / std::abs(numeric);
  return error == 0 ? 0 : kInf;
}

absl::Status CheckNumeric(const Objective& objective, size_t t,
                          const std::vector<double>& analytic,
                          const GradCheckOptions& options, std::mt19937_64& rng,
                          TensorCheck& check) {
  std::vector<double> theta = objective.point();
  const int64_t offset = objective.offsets()[t];
  const int64_t n = objective.offsets()[t + 1] - offset;
  double worst = -1;
  for (int64_t i : ElementsToCheck(n, options.max_elements_per_tensor, rng)) {
    double& x = theta[offset + i];
    const double saved = x;
    x = saved + options.epsilon;
    ASSIGN_OR_RETURN(const double plus, objective.Value(theta));
    x = saved - options.epsilon;
    ASSIGN_OR_RETURN(const double minus, objective.Value(theta));
    x = saved;
    const double numeric = (plus - minus) / (2 * options.epsilon);
    const double a = analytic[offset + i];
    const double error = std::abs(a - numeric);
    const double tolerance = options.atol + options.rtol * std::abs(numeric);
    KeepMax(check.max_abs_error, error);
    KeepMax(check.max_rel_error, RelativeError(error, numeric));
    if (const double excess = Excess(error, tolerance); excess > worst) {
      worst = excess;
      check.worst_index = MultiIndex(i, objective.shapes()[t]);
      check.analytic = a;
      check.numeric = numeric;
    }
    if (!(error <= tolerance)) check.numeric_passed = false;
    ++check.elements_checked;
  }
  return absl::OkStatus();
}

void CheckFloat32(const Objective& objective, size_t t,
                  const std::vector<double>& analytic,
                  const std::vector<double>& fast,
                  const GradCheckOptions& options, TensorCheck& check) {
  const int64_t offset = objective.offsets()[t];
  const int64_t n = objective.offsets()[t + 1] - offset;
  double worst = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double exact = analytic[offset + i];
    const double error = std::abs(fast[offset + i] - exact);
    const double tolerance =
        options.atol + options.float32_rtol * std::abs(exact);
    KeepMax(check.float32_max_abs_error, error);
    if (const double excess = Excess(error, tolerance); excess > worst) {
      worst = excess;
      check.float32_worst_index = MultiIndex(i, objective.shapes()[t]);
      check.float32_value = fast[offset + i];
    }
    if (!(error <= tolerance)) check.float32_passed = false;
  }
}

}  // namespace

std::vector<int64_t> MultiIndex(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

absl::StatusOr<GradientCheck> CheckGradients(const Objective& objective,
                                             const GradCheckOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  std::vector<double> analytic(objective.dimension());
  RETURN_IF_ERROR(
      objective.Gradient(objective.point(), absl::MakeSpan(analytic)).status());
  std::vector<double> fast;
  if (options.check_float32) {
    ASSIGN_OR_RETURN(fast, objective.Float32Gradient());
  }
  std::mt19937_64 rng(objective.args().seed);
  GradientCheck result;
  for (size_t t = 0; t < objective.wrt().size(); ++t) {
    TensorCheck check;
    check.name = objective.wrt()[t];
    RETURN_IF_ERROR(CheckNumeric(objective, t, analytic, options, rng, check));
    if (options.check_float32) {
      CheckFloat32(objective, t, analytic, fast, options, check);
    }
    check.passed = check.numeric_passed && check.float32_passed;
    result.passed = result.passed && check.passed;
    result.tensors.push_back(std::move(check));
  }
  return result;
}

absl::StatusOr<GradientCheck> CheckGradients(const GraphDef& graph,
                                             const ComputeArgs& args,
                                             const GradCheckOptions& options,
                                             const Limits& limits) {
  ASSIGN_OR_RETURN(Objective objective, Objective::Make(graph, args, limits));
  return CheckGradients(objective, options);
}

}  // namespace gradserve
