#include "server/codec/analysis_codec.h"

#include "core/status_macros.h"
#include "server/codec/call_codec.h"
#include "server/codec/graph_codec.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

// The model, feeds, loss, wrt, mode and seed every analysis request has;
// `more` checks the request's other tensors into the batch first.
template <typename Request, typename Call>
absl::StatusOr<Call> AnalysisCallFromProto(
    Request& r, const Limits& limits,
    const std::function<absl::Status(TensorBatch&)>& more) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.feeds(), "feeds"));
  RETURN_IF_ERROR(more(batch));
  Call call;
  ASSIGN_OR_RETURN(call.model, ModelFromProto(r, batch, limits));
  RETURN_IF_ERROR(batch.CheckTotal());
  ASSIGN_OR_RETURN(call.args.feeds,
                   TakeTensorsFromProto(r.mutable_feeds(), "feeds", limits));
  call.args.loss = r.loss();
  call.args.wrt.assign(r.wrt().begin(), r.wrt().end());
  call.args.mode = ModeFromProto(r.mode());
  call.args.seed = r.seed();
  return call;
}

double OrDefault(double value, double default_value) {
  return value != 0 ? value : default_value;
}

}  // namespace

absl::StatusOr<runtime::CheckGradientsCall> CheckGradientsCallFromProto(
    pb::CheckGradientsRequest& r, const Limits& limits) {
  using Call = runtime::CheckGradientsCall;
  ASSIGN_OR_RETURN(Call call,
                   (AnalysisCallFromProto<pb::CheckGradientsRequest, Call>(
                       r, limits, [&r](TensorBatch& batch) {
                         return batch.Check(r.output_gradients(),
                                            "output_gradients");
                       })));
  ASSIGN_OR_RETURN(call.args.output_gradients,
                   TakeTensorsFromProto(r.mutable_output_gradients(),
                                        "output_gradients", limits));
  const GradCheckOptions defaults;
  call.options.epsilon = OrDefault(r.epsilon(), defaults.epsilon);
  call.options.rtol = OrDefault(r.rtol(), defaults.rtol);
  call.options.atol = OrDefault(r.atol(), defaults.atol);
  call.options.max_elements_per_tensor = r.max_elements_per_tensor();
  return call;
}

void GradientCheckToProto(const GradientCheck& check,
                          pb::CheckGradientsResponse* out) {
  for (const TensorCheck& c : check.tensors) {
    pb::TensorCheck* t = out->add_tensors();
    t->set_name(c.name);
    t->set_elements_checked(c.elements_checked);
    t->set_max_abs_error(c.max_abs_error);
    t->set_max_rel_error(c.max_rel_error);
    t->mutable_worst_index()->Assign(c.worst_index.begin(),
                                     c.worst_index.end());
    t->set_analytic(c.analytic);
    t->set_numeric(c.numeric);
    t->set_passed(c.passed);
    t->set_numeric_passed(c.numeric_passed);
    t->set_float32_passed(c.float32_passed);
    t->set_float32_max_abs_error(c.float32_max_abs_error);
    t->mutable_float32_worst_index()->Assign(c.float32_worst_index.begin(),
                                             c.float32_worst_index.end());
    t->set_float32_value(c.float32_value);
  }
  out->set_passed(check.passed);
}

absl::StatusOr<runtime::HessianVectorProductCall>
HessianVectorProductCallFromProto(pb::HessianVectorProductRequest& r,
                                  const Limits& limits) {
  using Call = runtime::HessianVectorProductCall;
  ASSIGN_OR_RETURN(
      Call call, (AnalysisCallFromProto<pb::HessianVectorProductRequest, Call>(
                     r, limits, [&r](TensorBatch& batch) {
                       return batch.Check(r.vector(), "vector");
                     })));
  ASSIGN_OR_RETURN(call.vector,
                   TakeTensorsFromProto(r.mutable_vector(), "vector", limits));
  return call;
}

absl::StatusOr<runtime::HessianEigenvaluesCall> HessianEigenvaluesCallFromProto(
    pb::HessianEigenvaluesRequest& r, const Limits& limits) {
  using Call = runtime::HessianEigenvaluesCall;
  ASSIGN_OR_RETURN(
      Call call,
      (AnalysisCallFromProto<pb::HessianEigenvaluesRequest, Call>(
          r, limits, [](TensorBatch&) { return absl::OkStatus(); })));
  call.k = r.k();
  return call;
}

void SpectrumToProto(const HessianSpectrum& spectrum,
                     pb::HessianEigenvaluesResponse* out) {
  out->mutable_largest()->Assign(spectrum.largest.begin(),
                                 spectrum.largest.end());
  out->mutable_smallest()->Assign(spectrum.smallest.begin(),
                                  spectrum.smallest.end());
  out->set_exact(spectrum.exact);
  out->set_gradient_norm(spectrum.gradient_norm);
  out->set_critical_point(spectrum.critical_point);
  out->set_loss(spectrum.loss);
  out->set_iterations(static_cast<int32_t>(spectrum.iterations));
  out->set_converged(spectrum.converged);
}

void DiagnosticsToProto(const Diagnostics& diagnostics, pb::Diagnostics* out) {
  for (const ValueDiagnostics& d : diagnostics.values) {
    pb::ValueDiagnostics* v = out->add_values();
    v->set_value(d.value);
    v->set_node(d.node);
    v->set_op(d.op);
    v->set_mean(d.mean);
    v->set_std(d.std);
    v->set_zero_fraction(d.zero_fraction);
    v->set_dead_fraction(d.dead_fraction);
    v->set_saturated_fraction(d.saturated_fraction);
    v->set_non_finite(d.non_finite);
    v->set_grad_norm(d.grad_norm);
  }
  for (const auto& [name, norm] : diagnostics.parameter_grad_norms) {
    (*out->mutable_parameter_grad_norms())[name] = norm;
  }
  for (const std::string& w : diagnostics.warnings) out->add_warnings(w);
  out->set_first_non_finite_node(diagnostics.first_non_finite_node);
}

}  // namespace gradserve::server
