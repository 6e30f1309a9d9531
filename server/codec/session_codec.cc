#include "server/codec/session_codec.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/codec/analysis_codec.h"
#include "server/codec/graph_codec.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

AdamConfig AdamFromProto(const pb::Adam& a) {
  AdamConfig c;
  c.decoupled_weight_decay = a.decoupled_weight_decay();
  c.amsgrad = a.amsgrad();
  if (a.has_lr()) c.lr = a.lr();
  if (a.has_beta1()) c.beta1 = a.beta1();
  if (a.has_beta2()) c.beta2 = a.beta2();
  if (a.has_eps()) c.eps = a.eps();
  // torch.optim.AdamW's default weight decay is 1e-2, Adam's 0.
  c.weight_decay = a.has_weight_decay()       ? a.weight_decay()
                   : c.decoupled_weight_decay ? 1e-2
                                              : 0.0;
  return c;
}

}  // namespace

absl::StatusOr<OptimizerConfig> OptimizerFromProto(const pb::Optimizer& o) {
  OptimizerConfig config;
  config.max_grad_norm = o.max_grad_norm();
  switch (o.kind_case()) {
    case pb::Optimizer::kSgd: {
      const pb::SGD& s = o.sgd();
      config.kind = SgdConfig{s.lr(), s.momentum(), s.dampening(),
                              s.weight_decay(), s.nesterov()};
      break;
    }
    case pb::Optimizer::kAdam:
      config.kind = AdamFromProto(o.adam());
      break;
    default:
      return absl::InvalidArgumentError(
          "optimizer: set sgd or adam (or leave the optimizer out for a "
          "session that does not train)");
  }
  RETURN_IF_ERROR(ValidateOptimizer(config));
  return config;
}

void OptimizerToProto(const OptimizerConfig& config, pb::Optimizer* out) {
  out->set_max_grad_norm(config.max_grad_norm);
  if (const auto* s = std::get_if<SgdConfig>(&config.kind)) {
    pb::SGD* sgd = out->mutable_sgd();
    sgd->set_lr(s->lr);
    sgd->set_momentum(s->momentum);
    sgd->set_dampening(s->dampening);
    sgd->set_weight_decay(s->weight_decay);
    sgd->set_nesterov(s->nesterov);
    return;
  }
  const auto& a = std::get<AdamConfig>(config.kind);
  pb::Adam* adam = out->mutable_adam();
  adam->set_lr(a.lr);
  adam->set_beta1(a.beta1);
  adam->set_beta2(a.beta2);
  adam->set_eps(a.eps);
  adam->set_weight_decay(a.weight_decay);
  adam->set_amsgrad(a.amsgrad);
  adam->set_decoupled_weight_decay(a.decoupled_weight_decay);
}

absl::StatusOr<runtime::CreateSessionCall> CreateSessionCallFromProto(
    pb::CreateSessionRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  runtime::CreateSessionCall call;
  ASSIGN_OR_RETURN(call.model, ModelFromProto(r, batch, limits));
  if (r.has_optimizer()) {
    ASSIGN_OR_RETURN(call.optimizer, OptimizerFromProto(r.optimizer()));
  }
  call.frozen.assign(r.frozen().begin(), r.frozen().end());
  call.ttl_seconds = r.ttl_seconds();
  call.label = r.label();
  return call;
}

void SessionInfoToProto(const runtime::SessionInfo& info,
                        pb::SessionInfo* out) {
  out->set_session_id(info.session_id);
  out->set_label(info.label);
  out->set_step(info.step);
  out->set_parameter_count(info.parameter_count);
  out->set_bytes(info.bytes);
  out->set_expires_unix_ms(info.expires_unix_ms);
}

runtime::GetParametersCall GetParametersCallFromProto(
    const pb::GetParametersRequest& r) {
  runtime::GetParametersCall call;
  call.session_id = r.session_id();
  call.names.assign(r.names().begin(), r.names().end());
  call.include_optimizer_state = r.include_optimizer_state();
  return call;
}

void SessionValuesToWire(const runtime::SessionValues& values,
                         pb::GetParametersResponse* rest, WireMessage* out) {
  rest->set_step(values.step);
  out->AddTensorMap(pb::GetParametersResponse::kParametersFieldNumber,
                    values.parameters);
  out->AddTensorMap(pb::GetParametersResponse::kBuffersFieldNumber,
                    values.buffers);
  out->AddTensorMap(pb::GetParametersResponse::kOptimizerStateFieldNumber,
                    values.optimizer_state);
}

absl::StatusOr<runtime::SetParametersCall> SetParametersCallFromProto(
    pb::SetParametersRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.parameters(), "parameters"));
  RETURN_IF_ERROR(batch.Check(r.buffers(), "buffers"));
  RETURN_IF_ERROR(batch.Check(r.optimizer_state(), "optimizer_state"));
  RETURN_IF_ERROR(batch.CheckTotal());
  runtime::SetParametersCall call;
  call.session_id = r.session_id();
  using Ordered = std::map<std::string, Tensor>;
  ASSIGN_OR_RETURN(call.parameters,
                   TakeTensorsFromProto<Ordered>(r.mutable_parameters(),
                                                 "parameters", limits));
  ASSIGN_OR_RETURN(call.buffers, TakeTensorsFromProto<Ordered>(
                                     r.mutable_buffers(), "buffers", limits));
  ASSIGN_OR_RETURN(call.optimizer_state,
                   TakeTensorsFromProto<Ordered>(r.mutable_optimizer_state(),
                                                 "optimizer_state", limits));
  if (r.has_step()) call.step = r.step();
  return call;
}

absl::StatusOr<runtime::TrainStepCall> TrainStepCallFromProto(
    pb::TrainStepRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.feeds(), "feeds"));
  RETURN_IF_ERROR(batch.CheckTotal());
  runtime::TrainStepCall call;
  call.session_id = r.session_id();
  ASSIGN_OR_RETURN(call.feeds,
                   TakeTensorsFromProto(r.mutable_feeds(), "feeds", limits));
  call.loss = r.loss();
  call.fetch.assign(r.fetch().begin(), r.fetch().end());
  call.seed = r.seed();
  call.learning_rate = r.learning_rate();
  call.diagnostics = r.diagnostics();
  return call;
}

void TrainStepReplyToWire(const runtime::TrainStepReply& reply,
                          pb::TrainStepResponse* rest, WireMessage* out) {
  rest->set_step(reply.step);
  rest->set_grad_norm(reply.grad_norm);
  if (reply.diagnostics) {
    DiagnosticsToProto(*reply.diagnostics, rest->mutable_diagnostics());
  }
  out->AddTensor(pb::TrainStepResponse::kLossFieldNumber, reply.loss);
  out->AddTensorMap(pb::TrainStepResponse::kOutputsFieldNumber, reply.outputs);
}

}  // namespace gradserve::server
