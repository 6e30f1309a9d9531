#include "server/gradient_service.h"

#include <chrono>
#include <exception>
#include <new>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "server/codec/analysis_codec.h"
#include "server/codec/call_codec.h"
#include "server/codec/session_codec.h"
#include "server/codec/shared_memory_codec.h"
#include "server/codec/tensor_codec.h"
#include "server/codec/wire_check.h"
#include "server/rpc.h"

namespace gradserve::server {
namespace {

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
    op->set_variadic_outputs(schema->variadic_outputs);
    for (const AttrSpec& spec : schema->attrs) {
      pb::OpAttribute* attr = op->add_attributes();
      attr->set_name(spec.name);
      attr->set_type(absl::StrCat(AttrTypeName(spec.type),
                                  spec.or_string ? " or string" : ""));
      if (spec.default_value) {
        attr->set_default_value(AttrValueToString(*spec.default_value));
      }
      attr->set_description(spec.description);
    }
  }
}

// Runs `work`, turning what escapes it into a status: running out of memory
// is RESOURCE_EXHAUSTED, anything else a bug.
absl::Status Guarded(const std::function<absl::Status()>& work) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory for this request");
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("unexpected exception: ", e.what()));
  }
}

}  // namespace

namespace {

const google::protobuf::ServiceDescriptor& Service() {
  static const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "gradserve.v1.GradientService");
  return *service;
}

}  // namespace

// Finishes a unary call, telling the observer how it went first, and then
// the gate that admitted it (none for a call refused there). Named in the
// header, for Admitted.
class UnaryEnd {
 public:
  UnaryEnd(grpc::ServerUnaryReactor* reactor, CallObserver* observer,
           int method, int64_t bytes_in, CallGate* gate)
      : reactor_(reactor),
        observer_(observer),
        method_(method),
        bytes_in_(bytes_in),
        gate_(gate),
        start_(std::chrono::steady_clock::now()) {}

  void Finish(const absl::Status& status, absl::string_view peer,
              absl::string_view tenant, int64_t bytes_out = 0,
              absl::Duration paced = absl::ZeroDuration()) const {
    grpc::Status reply = ToGrpcStatus(status);
    if (observer_ != nullptr) {
      const auto elapsed = std::chrono::steady_clock::now() - start_;
      observer_->OnCall(
          {method_, peer, tenant, reply.error_code(), bytes_in_, bytes_out,
           std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed)
               .count(),
           paced > absl::ZeroDuration() ? 1 : 0,
           absl::ToInt64Nanoseconds(paced)});
    }
    reactor_->Finish(reply);
    if (gate_ != nullptr) gate_->Leave();
  }

 private:
  grpc::ServerUnaryReactor* const reactor_;
  CallObserver* const observer_;
  const int method_;
  const int64_t bytes_in_;
  CallGate* const gate_;
  const std::chrono::steady_clock::time_point start_;
};

int MethodIndex(absl::string_view method) {
  return Service().FindMethodByName(std::string(method))->index();
}

int MethodCount() { return Service().method_count(); }

const std::string& MethodName(int index) {
  static const std::string* none = new std::string();
  if (index < 0 || index >= MethodCount()) return *none;
  return Service().method(index)->name();
}

GradientServiceImpl::GradientServiceImpl(runtime::Runtime* runtime,
                                         const ServiceOptions& options)
    : runtime_(runtime), options_(options) {
  static_info_.set_version(GRADSERVE_VERSION);
  FillOps(&static_info_);
  const Limits& limits = runtime->limits();
  pb::ServerLimits* l = static_info_.mutable_limits();
  l->set_max_message_bytes(options.max_message_bytes);
  l->set_max_tensor_elements(limits.max_tensor_elements);
  l->set_max_graph_nodes(limits.max_graph_nodes);
  l->set_max_request_bytes(limits.max_request_bytes);
  l->set_max_inflight_bytes(runtime->memory_budget().capacity());
  l->set_max_sessions(runtime->sessions().options().max_sessions);
  l->set_max_session_bytes(runtime->sessions().options().max_bytes);
  l->set_max_activation_bytes(runtime->activations().options().max_bytes);
  static_info_.set_onednn_version(DnnlVersion());
  static_info_.set_cpu_isa(DnnlCpuIsa());
  static_info_.set_workers(runtime->pool()->shape().workers);
  static_info_.set_threads_per_worker(
      runtime->pool()->shape().threads_per_worker);
  static_info_.add_features("sessions");
  static_info_.add_features("forward_backward");
  static_info_.add_features("compute_stream");
  static_info_.add_features("analysis");
  if (runtime->persistence() != nullptr) {
    static_info_.add_features("persistence");
  }
  if (runtime->shared_memory().enabled()) {
    static_info_.add_features("shared_memory");
  }
  if (options.tls) static_info_.add_features("tls");
  if (options.mutual_tls) static_info_.add_features("mutual_tls");
  if (options.tokens != nullptr) static_info_.add_features("auth");
  if (options.metrics) static_info_.add_features("metrics");
  AddComputeRpcs();
  AddAnalysisRpcs();
  AddSessionRpcs();
  AddInfoRpcs();
  AddSharedMemoryRpcs();
  AddComputeStream();
}

template <typename Request, typename Reply>
void GradientServiceImpl::AddUnary(absl::string_view method, Where where,
                                   Handler<Request, Reply> handler) {
  const int index = MethodIndex(method);
  AddRawUnary(
      index, [this, index, where, handler = std::move(handler),
              check = WireCheck(*Request::descriptor())](
                 grpc::CallbackServerContext* context,
                 grpc::ServerUnaryReactor* reactor,
                 const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
        std::optional<Admitted> call =
            Admit(index, check, context, reactor, *request);
        if (!call) return;
        auto task = [call = *call, request, response, &handler]() {
          Answer(call, response, [&](WireMessage* reply) -> absl::Status {
            RETURN_IF_ERROR(call.ctx.check_cancelled());
            Request parsed;
            RETURN_IF_ERROR(ParseMessage(*request, &parsed));
            Reply rest;
            RETURN_IF_ERROR(handler(call.ctx, parsed, &rest, reply));
            reply->AddRest(rest);
            return absl::OkStatus();
          });
        };
        Dispatch(where, *call, *request, std::move(task));
      });
}

void GradientServiceImpl::AddRawUnary(int method, RawStart start) {
  MarkMethodRawCallback(
      method,
      new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer,
                                               grpc::ByteBuffer>(
          [start = std::move(start)](grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) {
            // Once: each DefaultReactor() call makes it anew.
            grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
            start(context, reactor, request, response);
            return reactor;
          }));
}

std::optional<GradientServiceImpl::Admitted> GradientServiceImpl::Admit(
    int method, const WireCheck& check, grpc::CallbackServerContext* context,
    grpc::ServerUnaryReactor* reactor, const grpc::ByteBuffer& request) {
  const int64_t bytes_in = static_cast<int64_t>(request.Length());
  if (!calls_.Enter()) {
    UnaryEnd(reactor, options_.observer, method, bytes_in, nullptr)
        .Finish(CallGate::Refused(), context->peer(), "");
    return std::nullopt;
  }
  const UnaryEnd end(reactor, options_.observer, method, bytes_in, &calls_);
  absl::StatusOr<runtime::CallContext> caller =
      CallContextOf(context, options_.tokens.get());
  if (!caller.ok()) {
    end.Finish(caller.status(), context->peer(), "");
    return std::nullopt;
  }
  // What needs no compute is refused here, without a turn on the pool, at
  // the pace of the caller's host.
  absl::Status valid = check.Check(request, runtime_->limits());
  if (!valid.ok()) {
    auto refuse = [end, valid, peer = caller->connection,
                   tenant = caller->tenant](absl::Duration waited) {
      end.Finish(valid, peer, tenant, 0, waited);
    };
    if (!pacer_.Hold(caller->connection, refuse)) refuse(absl::ZeroDuration());
    return std::nullopt;
  }
  // The tenant's call in flight, then the message and its parsed copy,
  // held while the call waits and runs.
  auto admitted = runtime_->AdmitCall(*caller, request.Length());
  if (!admitted.ok()) {
    end.Finish(admitted.status(), caller->connection, caller->tenant);
    return std::nullopt;
  }
  return Admitted{std::make_shared<UnaryEnd>(end), *std::move(caller),
                  std::make_shared<runtime::Admission>(*std::move(admitted))};
}

void GradientServiceImpl::Answer(
    const Admitted& call, grpc::ByteBuffer* response,
    const std::function<absl::Status(WireMessage*)>& work) {
  absl::Status status = Guarded([&]() -> absl::Status {
    WireMessage reply;
    RETURN_IF_ERROR(work(&reply));
    reply.Finish(response);
    return absl::OkStatus();
  });
  *call.admission = runtime::Admission();  // given back before the reply
  call.end->Finish(status, call.ctx.connection, call.ctx.tenant,
                   status.ok() ? static_cast<int64_t>(response->Length()) : 0);
}

void GradientServiceImpl::Dispatch(Where where, const Admitted& call,
                                   const grpc::ByteBuffer& request,
                                   std::function<void()> task) {
  if (!Schedule(where, call.ctx, request, std::move(task))) {
    call.end->Finish(absl::ResourceExhaustedError(
                         "the server's compute queue is full; retry later"),
                     call.ctx.connection, call.ctx.tenant);
  }
}

template <typename Request>
absl::StatusOr<GradientServiceImpl::SharedMemoryInputs>
GradientServiceImpl::ReadSharedMemory(const runtime::CallContext& ctx,
                                      Request& request) {
  SharedMemoryInputs in{
      SharedMemoryReads(&runtime_->shared_memory(), ctx, runtime_->limits()),
      {}};
  RETURN_IF_ERROR(AddSharedMemoryTensors(request, &in.reads));
  if (in.reads.empty()) return in;
  ASSIGN_OR_RETURN(
      in.held, runtime_->memory_budget().Reserve(
                   in.reads.bytes(), "the request's tensors in shared memory"));
  RETURN_IF_ERROR(in.reads.ReadAll());
  return in;
}

bool GradientServiceImpl::Schedule(Where where, const runtime::CallContext& ctx,
                                   const grpc::ByteBuffer& request,
                                   std::function<void()> task) {
  if (where == Where::kHere) {
    task();
    return true;
  }
  if (where == Where::kSessionStrand) {
    // session_id is field 1 of every request that changes a session.
    auto session =
        runtime_->sessions().Find(ctx.tenant, PeekStringField(request, 1));
    if (session.ok()) {
      return (*session)->strand().Submit(runtime::SchedulingKey(ctx),
                                         std::move(task));
    }
  }
  return runtime_->pool()->Submit(runtime::SchedulingKey(ctx), std::move(task));
}

void GradientServiceImpl::AddComputeRpcs() {
  const Limits& limits = runtime_->limits();
  const int compute = MethodIndex("Compute");
  AddRawUnary(compute, [this, compute](grpc::CallbackServerContext* context,
                                       grpc::ServerUnaryReactor* reactor,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) {
    std::optional<Admitted> call =
        Admit(compute, compute_check_, context, reactor, *request);
    if (call) StartCompute(*call, *request, response);
  });
  AddUnary<pb::DescribeRequest, pb::DescribeResponse>(
      "Describe", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx, pb::DescribeRequest& r,
                      pb::DescribeResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, DescribeCallFromProto(r, limits));
        ASSIGN_OR_RETURN(GraphSummary summary,
                         runtime_->Describe(ctx, std::move(call)));
        SummaryToProto(summary, out);
        return absl::OkStatus();
      });
  AddUnary<pb::ForwardRequest, pb::ForwardResponse>(
      "Forward", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx, pb::ForwardRequest& r,
                      pb::ForwardResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, ForwardCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto reply, runtime_->Forward(ctx, std::move(call)));
        ForwardReplyToWire(reply, out, wire);
        return absl::OkStatus();
      });
  AddUnary<pb::BackwardRequest, pb::BackwardResponse>(
      "Backward", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx, pb::BackwardRequest& r,
                      pb::BackwardResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, BackwardCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto gradients,
                         runtime_->Backward(ctx, std::move(call)));
        wire->AddTensorMap(pb::BackwardResponse::kGradientsFieldNumber,
                           gradients);
        return absl::OkStatus();
      });
}

void GradientServiceImpl::AddAnalysisRpcs() {
  const Limits& limits = runtime_->limits();
  AddUnary<pb::CheckGradientsRequest, pb::CheckGradientsResponse>(
      "CheckGradients", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx,
                      pb::CheckGradientsRequest& r,
                      pb::CheckGradientsResponse* out, WireMessage*) {
        ASSIGN_OR_RETURN(auto call, CheckGradientsCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto check,
                         runtime_->CheckGradients(ctx, std::move(call)));
        GradientCheckToProto(check, out);
        return absl::OkStatus();
      });
  AddUnary<pb::HessianVectorProductRequest, pb::HessianVectorProductResponse>(
      "HessianVectorProduct", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx,
                      pb::HessianVectorProductRequest& r,
                      pb::HessianVectorProductResponse*, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto call,
                         HessianVectorProductCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto product,
                         runtime_->HessianVectorProduct(ctx, std::move(call)));
        wire->AddTensorMap(
            pb::HessianVectorProductResponse::kProductFieldNumber, product);
        return absl::OkStatus();
      });
  AddUnary<pb::HessianEigenvaluesRequest, pb::HessianEigenvaluesResponse>(
      "HessianEigenvalues", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx,
                      pb::HessianEigenvaluesRequest& r,
                      pb::HessianEigenvaluesResponse* out, WireMessage*) {
        ASSIGN_OR_RETURN(auto call, HessianEigenvaluesCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto spectrum,
                         runtime_->HessianEigenvalues(ctx, std::move(call)));
        SpectrumToProto(spectrum, out);
        return absl::OkStatus();
      });
}

absl::Status GradientServiceImpl::ComputeOne(const runtime::CallContext& ctx,
                                             pb::ComputeRequest& request,
                                             WireMessage* response) {
  ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, request));
  ASSIGN_OR_RETURN(auto placement,
                   OutputPlacement::Check(request.output_placement(), shm.reads,
                                          &runtime_->shared_memory(), ctx));
  ASSIGN_OR_RETURN(auto call,
                   ComputeCallFromProto(request, runtime_->limits()));
  ASSIGN_OR_RETURN(auto reply, runtime_->Compute(ctx, std::move(call)));
  pb::ComputeResponse placed;  // the placed tensors' references
  RETURN_IF_ERROR(placement.Write(&reply.result, &placed));
  ComputeReplyToWire(reply, response);
  response->AddRest(placed);
  return absl::OkStatus();
}

void GradientServiceImpl::StartCompute(const Admitted& call,
                                       const grpc::ByteBuffer& request,
                                       grpc::ByteBuffer* response) {
  if (options_.inline_compute_flops <= 0 ||
      request.Length() > kPlannedHereBytes) {
    Dispatch(Where::kPool, call, request, [this, call, &request, response] {
      Answer(call, response, [&](WireMessage* reply) -> absl::Status {
        RETURN_IF_ERROR(call.ctx.check_cancelled());
        return ComputeFromBytes(call.ctx, request, reply);
      });
    });
    return;
  }
  // Small: parsed and planned here; run here too when cached and cheap.
  auto parsed = std::make_shared<pb::ComputeRequest>();
  auto plan = std::make_shared<absl::StatusOr<std::optional<ComputePlan>>>();
  *plan = absl::InternalError("not planned");
  const absl::Status planned = Guarded([&]() -> absl::Status {
    RETURN_IF_ERROR(ParseMessage(request, parsed.get()));
    *plan = PlanHere(call.ctx, *parsed);
    return absl::OkStatus();
  });
  if (!planned.ok() || !plan->ok() ||
      (plan->value().has_value() && RunsHere(*plan->value()))) {
    Answer(call, response, [&](WireMessage* reply) -> absl::Status {
      RETURN_IF_ERROR(planned);
      if (!plan->ok()) return plan->status();
      return RunPlanned(call.ctx, std::move(*plan->value()), reply);
    });
    return;
  }
  Dispatch(Where::kPool, call, request, [this, call, parsed, plan, response] {
    Answer(call, response, [&](WireMessage* reply) -> absl::Status {
      RETURN_IF_ERROR(call.ctx.check_cancelled());
      std::optional<ComputePlan>& p = plan->value();
      if (!p.has_value()) return ComputeOne(call.ctx, *parsed, reply);
      return RunPlanned(call.ctx, std::move(*p), reply);
    });
  });
}

absl::StatusOr<std::optional<GradientServiceImpl::ComputePlan>>
GradientServiceImpl::PlanHere(const runtime::CallContext& ctx,
                              pb::ComputeRequest& request) {
  SharedMemoryReads reads(&runtime_->shared_memory(), ctx, runtime_->limits());
  RETURN_IF_ERROR(AddSharedMemoryTensors(request, &reads));
  // Shared memory, or a model to import: all of it on the pool.
  if (!reads.empty() || !request.output_placement().empty() ||
      request.model_case() == pb::ComputeRequest::kOnnxModel) {
    return std::nullopt;
  }
  ASSIGN_OR_RETURN(auto call,
                   ComputeCallFromProto(request, runtime_->limits()));
  return runtime_->PlanCompute(ctx, std::move(call), /*compile=*/false);
}

bool GradientServiceImpl::RunsHere(const ComputePlan& plan) const {
  const Program* program = plan.program();
  return program != nullptr &&
         program->flops() <= options_.inline_compute_flops &&
         program->peak_bytes_bound() + program->result_bytes_bound() <=
             kRunHereBytes;
}

absl::Status GradientServiceImpl::RunPlanned(const runtime::CallContext& ctx,
                                             ComputePlan plan,
                                             WireMessage* response) {
  ASSIGN_OR_RETURN(auto reply, runtime_->RunCompute(ctx, std::move(plan)));
  ComputeReplyToWire(reply, response);
  return absl::OkStatus();
}

absl::Status GradientServiceImpl::ComputeFromBytes(
    const runtime::CallContext& ctx, const grpc::ByteBuffer& request,
    WireMessage* response) {
  return Guarded([&]() -> absl::Status {
    pb::ComputeRequest parsed;
    RETURN_IF_ERROR(ParseMessage(request, &parsed));
    return ComputeOne(ctx, parsed, response);
  });
}

void GradientServiceImpl::AddSessionRpcs() {
  const Limits& limits = runtime_->limits();
  AddUnary<pb::CreateSessionRequest, pb::CreateSessionResponse>(
      "CreateSession", Where::kPool,
      [this, &limits](const runtime::CallContext& ctx,
                      pb::CreateSessionRequest& r,
                      pb::CreateSessionResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, CreateSessionCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto info,
                         runtime_->CreateSession(ctx, std::move(call)));
        SessionInfoToProto(info, out->mutable_session());
        return absl::OkStatus();
      });
  AddUnary<pb::CloseSessionRequest, pb::CloseSessionResponse>(
      "CloseSession", Where::kPool,
      [this](const runtime::CallContext& ctx, pb::CloseSessionRequest& r,
             pb::CloseSessionResponse*, WireMessage*) {
        return runtime_->CloseSession(ctx, r.session_id());
      });
  AddUnary<pb::ListSessionsRequest, pb::ListSessionsResponse>(
      "ListSessions", Where::kPool,
      [this](const runtime::CallContext& ctx, pb::ListSessionsRequest&,
             pb::ListSessionsResponse* out, WireMessage*) {
        for (const auto& info : runtime_->ListSessions(ctx)) {
          SessionInfoToProto(info, out->add_sessions());
        }
        return absl::OkStatus();
      });
  AddUnary<pb::GetParametersRequest, pb::GetParametersResponse>(
      "GetParameters", Where::kPool,
      [this](const runtime::CallContext& ctx, pb::GetParametersRequest& r,
             pb::GetParametersResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto values, runtime_->GetParameters(
                                          ctx, GetParametersCallFromProto(r)));
        SessionValuesToWire(values, out, wire);
        return absl::OkStatus();
      });
  AddUnary<pb::SetParametersRequest, pb::SetParametersResponse>(
      "SetParameters", Where::kSessionStrand,
      [this, &limits](const runtime::CallContext& ctx,
                      pb::SetParametersRequest& r,
                      pb::SetParametersResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, SetParametersCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto info,
                         runtime_->SetParameters(ctx, std::move(call)));
        SessionInfoToProto(info, out->mutable_session());
        return absl::OkStatus();
      });
  AddUnary<pb::TrainStepRequest, pb::TrainStepResponse>(
      "TrainStep", Where::kSessionStrand,
      [this, &limits](const runtime::CallContext& ctx, pb::TrainStepRequest& r,
                      pb::TrainStepResponse* out, WireMessage* wire) {
        ASSIGN_OR_RETURN(auto shm, ReadSharedMemory(ctx, r));
        ASSIGN_OR_RETURN(auto call, TrainStepCallFromProto(r, limits));
        ASSIGN_OR_RETURN(auto reply, runtime_->TrainStep(ctx, std::move(call)));
        TrainStepReplyToWire(reply, out, wire);
        return absl::OkStatus();
      });
}

void GradientServiceImpl::AddInfoRpcs() {
  // A copy of a prepared message and a few counters: cheap enough for
  // gRPC's thread.
  AddUnary<pb::GetServerInfoRequest, pb::GetServerInfoResponse>(
      "GetServerInfo", Where::kHere,
      [this](const runtime::CallContext& ctx, pb::GetServerInfoRequest&,
             pb::GetServerInfoResponse* out, WireMessage*) {
        *out = ServerInfo();
        TenantQuotaToProto(ctx.tenant, out->mutable_tenant_quota());
        return absl::OkStatus();
      });
}

void GradientServiceImpl::AddSharedMemoryRpcs() {
  AddUnary<pb::RegisterSharedMemoryRequest, pb::RegisterSharedMemoryResponse>(
      "RegisterSharedMemory", Where::kPool,
      [this](const runtime::CallContext& ctx,
             pb::RegisterSharedMemoryRequest& r,
             pb::RegisterSharedMemoryResponse*, WireMessage*) {
        RETURN_IF_ERROR(
            runtime_->shared_memory().CheckEnabled("RegisterSharedMemory"));
        if (!IsSameHostPeer(ctx.connection)) {
          return absl::PermissionDeniedError(absl::StrCat(
              "RegisterSharedMemory: shared memory is for clients on the "
              "server's host, over a unix socket or loopback; this call came "
              "from ",
              ctx.connection));
        }
        return runtime_->shared_memory().Register(ctx, r.region(), r.key(),
                                                  r.offset(), r.byte_size());
      });
  AddUnary<pb::UnregisterSharedMemoryRequest,
           pb::UnregisterSharedMemoryResponse>(
      "UnregisterSharedMemory", Where::kPool,
      [this](const runtime::CallContext& ctx,
             pb::UnregisterSharedMemoryRequest& r,
             pb::UnregisterSharedMemoryResponse*, WireMessage*) {
        return runtime_->shared_memory().Unregister(ctx, r.region());
      });
}

void GradientServiceImpl::TenantQuotaToProto(const std::string& tenant,
                                             pb::TenantQuota* out) const {
  const runtime::TenantAmounts limits = runtime_->quotas().LimitsOf(tenant);
  const runtime::TenantAmounts use = runtime_->quotas().UseOf(tenant);
  out->set_tenant(tenant);
  out->set_max_sessions(limits.sessions);
  out->set_max_bytes(limits.bytes);
  out->set_max_concurrent_calls(limits.calls);
  out->set_sessions(use.sessions);
  out->set_bytes(use.bytes);
  out->set_concurrent_calls(use.calls);
}

pb::GetServerInfoResponse GradientServiceImpl::ServerInfo() const {
  pb::GetServerInfoResponse info = static_info_;
  const ProgramCacheStats cache = runtime_->cache_stats();
  pb::ProgramCacheInfo* c = info.mutable_program_cache();
  c->set_hits(cache.hits);
  c->set_misses(cache.misses);
  c->set_evictions(cache.evictions);
  c->set_entries(cache.entries);
  c->set_bytes(cache.bytes);
  c->set_capacity_bytes(cache.capacity_bytes);
  info.set_sessions(runtime_->sessions().count());
  info.set_activations(runtime_->activations().count());
  return info;
}

}  // namespace gradserve::server
