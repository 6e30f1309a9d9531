#include "core/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

double Dot(const Tensor& a, const Tensor& b) {
  double sum = 0;
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  for (int64_t i = 0; i < a.num_elements(); ++i) sum += x[i] * y[i];
  return sum;
}

}  // namespace

absl::StatusOr<std::vector<TensorGradCheck>> CheckGradients(
    const GraphDef& graph, const ComputeArgs& args,
    const GradCheckOptions& options, const Limits& limits) {
  ComputeArgs exact = args;
  exact.float_dtype = DType::kFloat64;
  ASSIGN_OR_RETURN(RunResult analytic, Compute(graph, exact, limits));

  // One forward-only program for J, run once per perturbation.
  ProgramRequest request;
  TensorMap feeds;
  for (const auto& [name, t] : args.feeds) {
    request.given[name] = t.meta();
    feeds[name] = t.CastFloat(DType::kFloat64);
  }
  TensorMap seeds;
  if (!args.loss.empty()) request.fetch.push_back(args.loss);
  for (const auto& [name, seed] : args.output_gradients) {
    request.fetch.push_back(name);
    seeds[name] = seed.CastFloat(DType::kFloat64);
  }
  request.mode = args.mode;
  request.float_dtype = DType::kFloat64;
  const ValueSet state = ValuesOf(graph);
  for (const auto& [name, grad] : analytic.gradients) {
    if (feeds.contains(name)) continue;
    const Tensor* value = state.Find(name);
    if (value == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "wrt '", name,
          "': finite differences need a graph input, parameter or buffer"));
    }
    request.given[name] = value->meta();
    feeds[name] = value->CastFloat(DType::kFloat64).Clone();
  }
  ASSIGN_OR_RETURN(auto index, GraphIndex::Build(graph, limits));
  ASSIGN_OR_RETURN(auto program,
                   Program::Compile(std::move(index), request, limits));
  const RunControl control{args.seed, args.check_cancelled};
  auto objective = [&]() -> absl::StatusOr<double> {
    ForwardResult r;
    RETURN_IF_ERROR(Tape::Forward(program, feeds, state, control, &r).status());
    double j = 0;
    if (!args.loss.empty()) j += r.outputs.at(args.loss).data<double>()[0];
    for (const auto& [name, seed] : seeds) j += Dot(seed, r.outputs.at(name));
    return j;
  };

  std::vector<TensorGradCheck> checks;
  for (const auto& [name, grad] : analytic.gradients) {
    Tensor& x = feeds[name];
    if (!x.unique()) x = x.Clone();  // perturbed in place below
    TensorGradCheck check;
    check.name = name;
    const int64_t n = x.num_elements();
    const int64_t count =
        options.max_elements > 0 ? std::min(n, options.max_elements) : n;
    double worst = -1;
    for (int64_t k = 0; k < count; ++k) {
      int64_t i = count == n ? k : k * n / count;
      double* xi = x.data<double>() + i;
      const double saved = *xi;
      *xi = saved + options.epsilon;
      ASSIGN_OR_RETURN(double plus, objective());
      *xi = saved - options.epsilon;
      ASSIGN_OR_RETURN(double minus, objective());
      *xi = saved;
      double numeric = (plus - minus) / (2 * options.epsilon);
      double a = grad.data<double>()[i];
      double error = std::abs(a - numeric);
      double scaled = error / (1 + std::abs(numeric));
      check.max_abs_error = std::max(check.max_abs_error, error);
      if (scaled > worst) {
        worst = scaled;
        check.worst_index = i;
        check.worst_analytic = a;
        check.worst_numeric = numeric;
      }
      if (!(scaled <= options.tolerance)) check.passed = false;
      ++check.checked;
    }
    checks.push_back(std::move(check));
  }
  return checks;
}

}  // namespace gradserve
