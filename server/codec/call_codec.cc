#include "server/codec/call_codec.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/codec/analysis_codec.h"
#include "server/codec/graph_codec.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

pb::DataType WireType(DType dtype) { return WireDataType(dtype); }

absl::StatusOr<TensorMeta> MetaFromProto(const pb::TensorShape& shape,
                                         absl::string_view what) {
  TensorMeta meta;
  switch (shape.dtype()) {
    case pb::DATA_TYPE_UNSPECIFIED:
    case pb::DATA_TYPE_FLOAT32:
    case pb::DATA_TYPE_BFLOAT16:
    case pb::DATA_TYPE_FLOAT64:  // Describe plans shapes, in float32
      meta.dtype = DType::kFloat32;
      break;
    case pb::DATA_TYPE_INT64:
      meta.dtype = DType::kInt64;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown dtype ", shape.dtype()));
  }
  meta.shape.assign(shape.dims().begin(), shape.dims().end());
  return meta;
}

}  // namespace

Mode ModeFromProto(pb::Mode mode) {
  return mode == pb::MODE_EVAL ? Mode::kEval : Mode::kTrain;
}

absl::StatusOr<runtime::ComputeCall> ComputeCallFromProto(
    pb::ComputeRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.feeds(), "feeds"));
  RETURN_IF_ERROR(batch.Check(r.output_gradients(), "output_gradients"));
  runtime::ComputeCall call;
  ASSIGN_OR_RETURN(call.model, ModelFromProto(r, batch, limits));
  RETURN_IF_ERROR(batch.CheckTotal());
  ComputeArgs& args = call.args;
  ASSIGN_OR_RETURN(args.feeds,
                   TakeTensorsFromProto(r.mutable_feeds(), "feeds", limits));
  ASSIGN_OR_RETURN(args.output_gradients,
                   TakeTensorsFromProto(r.mutable_output_gradients(),
                                        "output_gradients", limits));
  args.fetch.assign(r.fetch().begin(), r.fetch().end());
  args.loss = r.loss();
  args.wrt.assign(r.wrt().begin(), r.wrt().end());
  args.mode = ModeFromProto(r.mode());
  args.seed = r.seed();
  call.diagnostics = r.diagnostics();
  return call;
}

void ComputeReplyToWire(const runtime::ComputeReply& reply, WireMessage* out) {
  const RunResult& result = reply.result;
  out->AddTensorMap(pb::ComputeResponse::kOutputsFieldNumber, result.outputs);
  out->AddTensorMap(pb::ComputeResponse::kGradientsFieldNumber,
                    result.gradients);
  out->AddTensorMap(pb::ComputeResponse::kBuffersFieldNumber, result.buffers);
  if (reply.diagnostics) {
    pb::ComputeResponse rest;
    DiagnosticsToProto(*reply.diagnostics, rest.mutable_diagnostics());
    out->AddRest(rest);
  }
}

absl::StatusOr<runtime::DescribeCall> DescribeCallFromProto(
    pb::DescribeRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  runtime::DescribeCall call;
  ASSIGN_OR_RETURN(call.model, ModelFromProto(r, batch, limits));
  for (const auto& [name, shape] : r.input_shapes()) {
    ASSIGN_OR_RETURN(call.input_shapes[name],
                     MetaFromProto(shape, Keyed("input_shapes", name)));
  }
  return call;
}

void SummaryToProto(const GraphSummary& summary, pb::DescribeResponse* out) {
  for (const NodeSummary& n : summary.nodes) {
    pb::NodeSummary* node = out->add_nodes();
    node->set_name(n.name);
    node->set_op(n.op);
    for (const TensorMeta& meta : n.outputs) {
      pb::TensorShape* shape = node->add_output_shapes();
      shape->mutable_dims()->Assign(meta.shape.begin(), meta.shape.end());
      shape->set_dtype(WireType(meta.dtype));
    }
    node->set_parameters(n.parameters);
    node->set_forward_flops(n.forward_flops);
  }
  out->set_total_parameters(summary.total_parameters);
  out->set_forward_flops(summary.forward_flops);
  out->set_backward_flops(summary.backward_flops);
}

absl::StatusOr<runtime::ForwardCall> ForwardCallFromProto(
    pb::ForwardRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.feeds(), "feeds"));
  runtime::ForwardCall call;
  ASSIGN_OR_RETURN(call.model, ModelFromProto(r, batch, limits));
  RETURN_IF_ERROR(batch.CheckTotal());
  ASSIGN_OR_RETURN(call.feeds,
                   TakeTensorsFromProto(r.mutable_feeds(), "feeds", limits));
  call.fetch.assign(r.fetch().begin(), r.fetch().end());
  call.loss = r.loss();
  call.wrt.assign(r.wrt().begin(), r.wrt().end());
  call.mode = ModeFromProto(r.mode());
  call.seed = r.seed();
  call.ttl_seconds = r.ttl_seconds();
  return call;
}

void ForwardReplyToWire(const runtime::ForwardReply& reply,
                        pb::ForwardResponse* rest, WireMessage* out) {
  rest->set_activation_id(reply.activation_id);
  rest->set_expires_unix_ms(reply.expires_unix_ms);
  out->AddTensorMap(pb::ForwardResponse::kOutputsFieldNumber, reply.outputs);
  out->AddTensorMap(pb::ForwardResponse::kBuffersFieldNumber, reply.buffers);
}

absl::StatusOr<runtime::BackwardCall> BackwardCallFromProto(
    pb::BackwardRequest& r, const Limits& limits) {
  TensorBatch batch(limits);
  RETURN_IF_ERROR(batch.Check(r.output_gradients(), "output_gradients"));
  RETURN_IF_ERROR(batch.CheckTotal());
  runtime::BackwardCall call;
  call.activation_id = r.activation_id();
  call.args.from_loss = r.from_loss();
  ASSIGN_OR_RETURN(call.args.grad_seeds,
                   TakeTensorsFromProto(r.mutable_output_gradients(),
                                        "output_gradients", limits));
  call.args.wrt.assign(r.wrt().begin(), r.wrt().end());
  call.args.keep = r.keep();
  return call;
}

}  // namespace gradserve::server
