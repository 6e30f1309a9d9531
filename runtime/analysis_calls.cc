// The analysis use cases: CheckGradients, HessianVectorProduct and
// HessianEigenvalues over a resolved model (graph, ONNX or session), its
// programs from the program cache as Compute's are.
#include "absl/status/status.h"
#include "core/analysis/gradient_check.h"
#include "core/analysis/hessian.h"
#include "core/status_macros.h"
#include "runtime/runtime.h"

namespace gradserve::runtime {

absl::StatusOr<Objective> Runtime::ObjectiveFor(const CallContext& ctx,
                                                ModelSource source,
                                                ComputeArgs args) {
  ASSIGN_OR_RETURN(Model model,
                   Resolve(ctx, std::move(source), MetasOf(args.feeds)));
  args.check_cancelled = ctx.check_cancelled;
  auto programs = [this, model](const ProgramRequest& request) {
    return ProgramFor(model, request);
  };
  return Objective::Make(std::move(programs), model.values, std::move(args));
}

absl::StatusOr<GradientCheck> Runtime::CheckGradients(const CallContext& ctx,
                                                      CheckGradientsCall call) {
  ASSIGN_OR_RETURN(Objective objective, ObjectiveFor(ctx, std::move(call.model),
                                                     std::move(call.args)));
  ASSIGN_OR_RETURN(auto reservation, budget_.Reserve(objective.run_bytes(),
                                                     "checking gradients"));
  return gradserve::CheckGradients(objective, call.options);
}

absl::StatusOr<std::map<std::string, Tensor>> Runtime::HessianVectorProduct(
    const CallContext& ctx, HessianVectorProductCall call) {
  if (call.args.loss.empty()) {
    return absl::InvalidArgumentError(
        "loss: name the scalar whose Hessian multiplies the vector");
  }
  ASSIGN_OR_RETURN(Objective objective, ObjectiveFor(ctx, std::move(call.model),
                                                     std::move(call.args)));
  ASSIGN_OR_RETURN(
      auto reservation,
      budget_.Reserve(objective.run_bytes() +
                          3 * objective.dimension() * int64_t{sizeof(double)},
                      "a Hessian-vector product"));
  return gradserve::HessianVectorProduct(objective, call.vector);
}

absl::StatusOr<HessianSpectrum> Runtime::HessianEigenvalues(
    const CallContext& ctx, HessianEigenvaluesCall call) {
  if (call.args.loss.empty()) {
    return absl::InvalidArgumentError(
        "loss: name the scalar whose Hessian's eigenvalues to compute");
  }
  ASSIGN_OR_RETURN(Objective objective, ObjectiveFor(ctx, std::move(call.model),
                                                     std::move(call.args)));
  ASSIGN_OR_RETURN(SpectrumPlan plan,
                   PlanSpectrum(objective.dimension(), call.k, limits_));
  ASSIGN_OR_RETURN(auto reservation,
                   budget_.Reserve(objective.run_bytes() + plan.bytes,
                                   "the Hessian's eigenvalues"));
  return gradserve::HessianEigenvalues(objective, plan);
}

}  // namespace gradserve::runtime
