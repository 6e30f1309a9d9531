#include "runtime/runtime.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/import/onnx/onnx_import.h"
#include "core/status_macros.h"
#include "runtime/ids.h"

namespace gradserve::runtime {
namespace {

// An onnx_model becomes the graph it imports to, for the inputs' shapes
// when the call has them (dynamic axes); from there on the call treats it
// as any graph (the program cache keys it by its structure).
absl::Status NeedsGraph(ModelSource& source, absl::string_view rpc,
                        const Limits& limits, const InputMetas& inputs = {}) {
  if (source.kind == ModelSource::Kind::kOnnx) {
    onnx_import::InputShapes shapes;
    for (const auto& [name, meta] : inputs) shapes[name] = meta.shape;
    ASSIGN_OR_RETURN(source.graph, onnx_import::ImportModel(source.onnx_model,
                                                            limits, shapes));
    source.onnx_model.clear();
    source.kind = ModelSource::Kind::kGraph;
  }
  if (source.kind == ModelSource::Kind::kGraph) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      rpc, ": the request carries no model: set graph or onnx_model"));
}

// The call's deadline passed or its client went away.
absl::Status Gone(const CallContext& ctx) {
  return ctx.check_cancelled ? ctx.check_cancelled() : absl::OkStatus();
}

}  // namespace

RunControl Control(const CallContext& ctx, uint64_t seed) {
  return RunControl{seed, ctx.check_cancelled};
}

InputMetas MetasOf(const TensorMap& feeds) {
  InputMetas metas;
  for (const auto& [name, t] : feeds) metas[name] = t.meta();
  return metas;
}

DType FloatDtypeOf(const TensorMap& feeds, const TensorMap& seeds,
                   const ValueSet& values) {
  auto any64 = [](const auto& map) {
    for (const auto& [name, t] : map) {
      if (t.dtype() == DType::kFloat64) return true;
    }
    return false;
  };
  return any64(feeds) || any64(seeds) || any64(values.parameters) ||
                 any64(values.buffers)
             ? DType::kFloat64
             : DType::kFloat32;
}

Runtime::Runtime(const RuntimeOptions& options, ComputePool* pool)
    : limits_(options.limits),
      pool_(pool),
      cache_(options.program_cache_bytes),
      budget_(options.max_inflight_bytes),
      quotas_(options.quotas),
      sessions_(options.sessions, pool, &quotas_),
      activations_(options.activations, &quotas_),
      shared_memory_(&quotas_),
      janitor_(absl::Seconds(1), [this] { Expire(); }) {}

Runtime::~Runtime() = default;

void Runtime::Expire() {
  const absl::Time now = absl::Now();
  sessions_.Expire(now);
  activations_.Expire(now);
  shared_memory_.Expire(now);
}

absl::Status Runtime::EnablePersistence(
    const PersistenceOptions& options,
    std::shared_ptr<const SessionCodec> codec) {
  if (persistence_ != nullptr) {
    return absl::FailedPreconditionError("persistence is already on");
  }
  ASSIGN_OR_RETURN(
      persistence_,
      SessionPersistence::Open(options, std::move(codec), &sessions_, limits_));
  persistence_->Restore();
  persistence_->Start();
  return absl::OkStatus();
}

absl::StatusOr<Admission> Runtime::AdmitCall(const CallContext& ctx,
                                             int64_t message_bytes) {
  Admission admission;
  ASSIGN_OR_RETURN(admission.call,
                   quotas_.Acquire(ctx.tenant, {0, 0, 1}, "the call"));
  ASSIGN_OR_RETURN(admission.message,
                   budget_.Reserve(2 * message_bytes, "the request message"));
  return admission;
}

absl::StatusOr<Runtime::Model> Runtime::Resolve(const CallContext& ctx,
                                                ModelSource source,
                                                const InputMetas& inputs) {
  Model model;
  if (source.kind == ModelSource::Kind::kOnnx) {
    RETURN_IF_ERROR(NeedsGraph(source, "model", limits_, inputs));
  }
  switch (source.kind) {
    case ModelSource::Kind::kSession: {
      ASSIGN_OR_RETURN(auto session,
                       sessions_.Find(ctx.tenant, source.session_id));
      return SessionModel(*session);
    }
    case ModelSource::Kind::kGraph: {
      auto graph = std::make_shared<GraphDef>(std::move(source.graph));
      model.graph_key = StructureKey(*graph);
      model.values = std::make_shared<ValueSet>(ValuesOf(*graph));
      model.index = [graph, limits = limits_] {
        return GraphIndex::Build(*graph, limits);
      };
      model.route = ctx.route;
      return model;
    }
    default:
      RETURN_IF_ERROR(NeedsGraph(source, "model", limits_));
      return model;
  }
}

Runtime::Model Runtime::SessionModel(const Session& session) {
  Model model;
  model.graph_key = session.index()->key();
  model.index = [index = session.index()] { return index; };
  model.values = session.values();
  model.route = std::string(RouteOf(session.id()));
  return model;
}

absl::StatusOr<std::shared_ptr<const Program>> Runtime::ProgramFor(
    const Model& model, const ProgramRequest& request) {
  return cache_.GetOrCompile(model.graph_key, request, model.index, limits_);
}

absl::StatusOr<MemoryBudget::Reservation> Runtime::ReserveRun(
    const Program& program) {
  return budget_.Reserve(
      program.peak_bytes_bound() + program.result_bytes_bound(),
      "computing the request");
}

absl::StatusOr<ComputeReply> Runtime::Compute(const CallContext& ctx,
                                              ComputeCall call) {
  ASSIGN_OR_RETURN(ComputePlan plan,
                   PlanCompute(ctx, std::move(call), /*compile=*/true));
  return RunCompute(ctx, std::move(plan));
}

absl::StatusOr<Runtime::ComputePlan> Runtime::PlanCompute(
    const CallContext& ctx, ComputeCall call, bool compile) {
  ComputePlan plan;
  ASSIGN_OR_RETURN(plan.model_, Resolve(ctx, std::move(call.model),
                                        MetasOf(call.args.feeds)));
  plan.request_ = ProgramRequestFor(call.args);
  plan.request_.float_dtype = FloatDtypeOf(
      call.args.feeds, call.args.output_gradients, *plan.model_.values);
  plan.call_ = std::move(call);
  if (compile) {
    ASSIGN_OR_RETURN(plan.program_, ProgramFor(plan.model_, plan.request_));
  } else {
    plan.program_ = cache_.Cached(plan.model_.graph_key, plan.request_);
  }
  return plan;
}

absl::StatusOr<ComputeReply> Runtime::RunCompute(const CallContext& ctx,
                                                 ComputePlan plan) {
  if (plan.program_ == nullptr) {
    ASSIGN_OR_RETURN(plan.program_, ProgramFor(plan.model_, plan.request_));
  }
  ASSIGN_OR_RETURN(auto reservation, ReserveRun(*plan.program_));
  const ComputeArgs& args = plan.call_.args;
  RunControl control = Control(ctx, args.seed);
  std::optional<DiagnosticsRecorder> recorder;
  if (plan.call_.diagnostics) control.observer = &recorder.emplace();
  ComputeReply reply;
  ASSIGN_OR_RETURN(reply.result,
                   Run(std::move(plan.program_), args.feeds,
                       *plan.model_.values, args.output_gradients, control));
  if (recorder) reply.diagnostics = recorder->Finish(reply.result.gradients);
  return reply;
}

absl::StatusOr<GraphSummary> Runtime::Describe(const CallContext& ctx,
                                               DescribeCall call) {
  ASSIGN_OR_RETURN(Model model,
                   Resolve(ctx, std::move(call.model), call.input_shapes));
  ASSIGN_OR_RETURN(auto index, model.index());
  return gradserve::Describe(std::move(index), call.input_shapes, limits_);
}

absl::StatusOr<ForwardReply> Runtime::Forward(const CallContext& ctx,
                                              ForwardCall call) {
  // The route of the new activation id, as CreateSession checks it.
  if (!ctx.route.empty()) RETURN_IF_ERROR(CheckRoute(ctx.route));
  ASSIGN_OR_RETURN(Model model,
                   Resolve(ctx, std::move(call.model), MetasOf(call.feeds)));
  RETURN_IF_ERROR(activations_.CheckTtl(call.ttl_seconds));
  // The activation's id carries the route, as a new session's does.
  if (!model.route.empty()) RETURN_IF_ERROR(CheckRoute(model.route));
  ProgramRequest request;
  request.given = MetasOf(call.feeds);
  request.fetch = call.fetch;
  request.loss = call.loss;
  request.seed_fetched = true;
  request.wrt = call.wrt;
  request.mode = call.mode;
  request.float_dtype = FloatDtypeOf(call.feeds, {}, *model.values);
  ASSIGN_OR_RETURN(auto program, ProgramFor(model, request));
  ASSIGN_OR_RETURN(auto reservation, ReserveRun(*program));
  ASSIGN_OR_RETURN(auto claim, activations_.ClaimBytes(
                                   ctx.tenant, program->saved_bytes_bound()));
  ForwardResult result;
  ASSIGN_OR_RETURN(auto tape, Tape::Forward(program, call.feeds, *model.values,
                                            Control(ctx, call.seed), &result));
  ForwardReply reply;
  reply.outputs = std::move(result.outputs);
  reply.buffers = std::move(result.buffers);
  if (!tape->spent()) {
    auto held = activations_.Put(ctx.tenant, model.route, std::move(tape),
                                 call.ttl_seconds, std::move(claim));
    if (absl::Status gone = Gone(ctx); !gone.ok()) {
      activations_.Release(ctx.tenant, held.id);
      return gone;
    }
    reply.activation_id = std::move(held.id);
    reply.expires_unix_ms = held.expires_unix_ms;
  }
  return reply;
}

absl::StatusOr<std::map<std::string, Tensor>> Runtime::Backward(
    const CallContext& ctx, BackwardCall call) {
  ASSIGN_OR_RETURN(auto activation,
                   activations_.Find(ctx.tenant, call.activation_id));
  std::lock_guard<std::mutex> lock(activation->mu);
  if (activation->tape == nullptr || activation->tape->spent()) {
    return absl::NotFoundError(
        absl::StrCat("activation '", call.activation_id,
                     "' not found: already used by a Backward without keep"));
  }
  Tape& tape = *activation->tape;
  RETURN_IF_ERROR(tape.CheckBackward(call.args));
  ASSIGN_OR_RETURN(auto reservation, ReserveRun(tape.program()));
  auto gradients = tape.Backward(call.args, Control(ctx, 0));
  if (tape.spent()) {
    activation->tape.reset();
    activations_.Release(ctx.tenant, call.activation_id);
  }
  return gradients;
}

absl::StatusOr<SessionInfo> Runtime::CreateSession(const CallContext& ctx,
                                                   CreateSessionCall call) {
  RETURN_IF_ERROR(NeedsGraph(call.model, "CreateSession", limits_));
  SessionSpec spec;
  spec.tenant = ctx.tenant;
  spec.route = ctx.route;
  spec.label = std::move(call.label);
  // Sessions keep the float dtype of their graph's values (see
  // SessionFloatDtype).
  spec.graph = std::move(call.model.graph);
  spec.optimizer = std::move(call.optimizer);
  spec.frozen = std::move(call.frozen);
  spec.ttl_seconds = call.ttl_seconds;
  ASSIGN_OR_RETURN(auto session, sessions_.Create(std::move(spec), limits_));
  // A caller gone by now never learns the id: nothing stays held for it.
  if (absl::Status gone = Gone(ctx); !gone.ok()) {
    CloseSession(ctx, session->id()).IgnoreError();
    return gone;
  }
  return session->Info();
}

absl::Status Runtime::CloseSession(const CallContext& ctx,
                                   const std::string& session_id) {
  RETURN_IF_ERROR(sessions_.Close(ctx.tenant, session_id));
  if (persistence_ != nullptr) persistence_->Forget(session_id);
  return absl::OkStatus();
}

std::vector<SessionInfo> Runtime::ListSessions(const CallContext& ctx) {
  return sessions_.List(ctx.tenant);
}

}  // namespace gradserve::runtime
