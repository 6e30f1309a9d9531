#include "server/gradient_service.h"

#include <chrono>
#include <exception>
#include <new>

#include "absl/strings/str_cat.h"
#include "core/compute.h"
#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/status_macros.h"
#include "server/convert.h"

namespace gradserve::server {
namespace {

namespace pb = ::gradserve::v1;

// Polled by the executor between nodes.
std::function<absl::Status()> CancellationCheck(
    grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  return [context, deadline]() {
    if (std::chrono::system_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          "the call's deadline passed while computing");
    }
    if (context->IsCancelled()) {
      return absl::CancelledError("the call was cancelled");
    }
    return absl::OkStatus();
  };
}

void FillOps(pb::GetServerInfoResponse* info) {
  for (const OpSchema* schema : OpRegistry::Global().All()) {
    pb::OpInfo* op = info->add_ops();
    op->set_name(schema->name);
    op->set_description(schema->description);
    for (const InputSpec& in : schema->inputs) {
      pb::OpInput* input = op->add_inputs();
      input->set_name(in.name);
      input->set_optional(in.optional);
      input->set_variadic(in.variadic);
    }
    for (const std::string& out : schema->outputs) op->add_outputs(out);
    for (const AttrSpec& spec : schema->attrs) {
      pb::OpAttribute* attr = op->add_attributes();
      attr->set_name(spec.name);
      attr->set_type(std::string(AttrTypeName(spec.type)));
      if (spec.default_value) {
        attr->set_default_value(AttrValueToString(*spec.default_value));
      }
      attr->set_description(spec.description);
    }
  }
}

}  // namespace

GradientServiceImpl::GradientServiceImpl(ComputePool* pool,
                                         const Limits& limits,
                                         int64_t max_message_bytes)
    : pool_(pool), limits_(limits) {
  info_.set_version(GRADSERVE_VERSION);
  FillOps(&info_);
  pb::ServerLimits* l = info_.mutable_limits();
  l->set_max_message_bytes(max_message_bytes);
  l->set_max_tensor_elements(limits.max_tensor_elements);
  l->set_max_graph_nodes(limits.max_graph_nodes);
  l->set_max_request_bytes(limits.max_request_bytes);
  info_.set_onednn_version(DnnlVersion());
  info_.set_cpu_isa(DnnlCpuIsa());
  info_.set_workers(pool->shape().workers);
  info_.set_threads_per_worker(pool->shape().threads_per_worker);
}

grpc::ServerUnaryReactor* GradientServiceImpl::RunOnPool(
    grpc::CallbackServerContext* context, std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  bool queued = pool_->Submit([reactor, work = std::move(work)]() {
    absl::Status status;
    try {
      status = work();
    } catch (const std::bad_alloc&) {
      status = absl::ResourceExhaustedError("out of memory for this request");
    } catch (const std::exception& e) {
      status =
          absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
    }
    reactor->Finish(ToGrpcStatus(status));
  });
  if (!queued) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "the server's compute queue is full; retry later"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* GradientServiceImpl::Compute(
    grpc::CallbackServerContext* context, const pb::ComputeRequest* request,
    pb::ComputeResponse* response) {
  return RunOnPool(
      context, [this, context, request, response]() -> absl::Status {
        GraphDef graph;
        ASSIGN_OR_RETURN(ComputeArgs args,
                         ComputeArgsFromProto(*request, limits_, &graph));
        args.check_cancelled = CancellationCheck(context);
        RETURN_IF_ERROR(args.check_cancelled());
        ASSIGN_OR_RETURN(RunResult result,
                         gradserve::Compute(graph, args, limits_));
        RunResultToProto(result, response);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* GradientServiceImpl::Describe(
    grpc::CallbackServerContext* context, const pb::DescribeRequest* request,
    pb::DescribeResponse* response) {
  return RunOnPool(context, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(auto inputs, InputMetasFromProto(*request));
    ASSIGN_OR_RETURN(GraphDef graph, GraphFromProto(request->graph(), limits_));
    ASSIGN_OR_RETURN(GraphSummary summary,
                     gradserve::Describe(graph, inputs, limits_));
    SummaryToProto(summary, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GradientServiceImpl::GetServerInfo(
    grpc::CallbackServerContext* context,
    const pb::GetServerInfoRequest* request,
    pb::GetServerInfoResponse* response) {
  // A copy of a prepared message: cheap enough for gRPC's thread.
  *response = info_;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace gradserve::server
