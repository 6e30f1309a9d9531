// The session use cases that read and change a session's values:
// GetParameters, SetParameters and TrainStep.
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "runtime/runtime.h"

namespace gradserve::runtime {
namespace {

// TrainStep trains the session's own parameters: feeds are graph inputs.
absl::Status CheckTrainFeeds(const Session& session, const TensorMap& feeds) {
  for (const auto& [name, t] : feeds) {
    const int id = session.index()->ValueId(name);
    if (id >= 0 && session.index()->values()[id].kind != ValueKind::kInput) {
      return absl::InvalidArgumentError(absl::StrCat(
          "feeds['", name, "']: TrainStep feeds graph inputs only; '", name,
          "' is a parameter or buffer of the session (SetParameters replaces "
          "those)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReplacement(const std::map<std::string, Tensor>& current,
                              const std::map<std::string, Tensor>& given,
                              absl::string_view field) {
  for (const auto& [name, t] : given) {
    auto it = current.find(name);
    if (it == current.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, "['", name,
                                                     "']: the session has no ",
                                                     field, " of that name"));
    }
    if (t.meta() != it->second.meta()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "['", name, "'] must be ", it->second.meta().ToString(),
          ", got ", t.meta().ToString()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSetParameters(const Session& session, const ValueSet& current,
                                const SetParametersCall& call) {
  RETURN_IF_ERROR(
      CheckReplacement(current.parameters, call.parameters, "parameters"));
  RETURN_IF_ERROR(CheckReplacement(current.buffers, call.buffers, "buffers"));
  if (!call.optimizer_state.empty()) {
    if (!session.optimizer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer_state: session '", session.id(),
                       "' has no optimizer, so it keeps no optimizer state"));
    }
    std::map<std::string, TensorMeta> trained;
    for (const std::string& name : session.trained()) {
      trained[name] = current.parameters.at(name).meta();
    }
    RETURN_IF_ERROR(ValidateOptimizerState(*session.optimizer(), trained,
                                           call.optimizer_state));
  }
  if (call.step && *call.step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be >= 0, got ", *call.step));
  }
  return absl::OkStatus();
}

// The parameters (and their state) a TrainStep's gradients update.
std::map<std::string, Tensor> Trained(const ValueSet& values,
                                      const std::map<std::string, Tensor>& g) {
  std::map<std::string, Tensor> parameters;
  for (const auto& [name, grad] : g) {
    parameters[name] = values.parameters.at(name);
  }
  return parameters;
}

}  // namespace

absl::StatusOr<SessionValues> Runtime::GetParameters(
    const CallContext& ctx, const GetParametersCall& call) {
  ASSIGN_OR_RETURN(auto session, sessions_.Find(ctx.tenant, call.session_id));
  auto values = session->values();
  SessionValues out;
  out.step = values->step;
  auto wanted = [&](const std::string& name) {
    return call.names.empty() || std::find(call.names.begin(), call.names.end(),
                                           name) != call.names.end();
  };
  for (const std::string& name : call.names) {
    if (values->Find(name) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("names: session '", session->id(),
                       "' has no parameter or buffer '", name, "'"));
    }
  }
  for (const auto& [name, t] : values->parameters) {
    if (wanted(name)) out.parameters[name] = t;
  }
  for (const auto& [name, t] : values->buffers) {
    if (wanted(name)) out.buffers[name] = t;
  }
  if (call.include_optimizer_state) {
    for (const auto& [key, t] : values->optimizer_state) {
      if (wanted(key.substr(0, key.rfind('/')))) out.optimizer_state[key] = t;
    }
  }
  return out;
}

// Runs on the session's strand: no TrainStep changes the values meanwhile.
absl::StatusOr<SessionInfo> Runtime::SetParameters(const CallContext& ctx,
                                                   SetParametersCall call) {
  ASSIGN_OR_RETURN(auto session, sessions_.Find(ctx.tenant, call.session_id));
  auto current = session->values();
  // The session keeps its float dtype: float tensors of the other one are
  // converted to it.
  CastFloats(call.parameters, session->float_dtype());
  CastFloats(call.buffers, session->float_dtype());
  CastFloats(call.optimizer_state, session->float_dtype());
  RETURN_IF_ERROR(CheckSetParameters(*session, *current, call));
  auto next = std::make_shared<ValueSet>(*current);
  for (auto& [name, t] : call.parameters) next->parameters[name] = std::move(t);
  for (auto& [name, t] : call.buffers) next->buffers[name] = std::move(t);
  for (auto& [key, t] : call.optimizer_state) {
    next->optimizer_state[key] = std::move(t);
  }
  if (call.step) next->step = *call.step;
  next->version = current->version + 1;
  session->Publish(std::move(next));
  return session->Info();
}

// Runs on the session's strand: steps apply one at a time, in order.
absl::StatusOr<TrainStepReply> Runtime::TrainStep(const CallContext& ctx,
                                                  TrainStepCall call) {
  ASSIGN_OR_RETURN(auto session, sessions_.Find(ctx.tenant, call.session_id));
  if (!session->optimizer()) {
    return absl::FailedPreconditionError(
        absl::StrCat("session '", session->id(),
                     "' has no optimizer; create it with one to train it"));
  }
  if (call.loss.empty()) {
    return absl::InvalidArgumentError("loss: name the scalar to minimise");
  }
  if (session->trained().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session '", session->id(), "': every parameter is frozen"));
  }
  RETURN_IF_ERROR(CheckTrainFeeds(*session, call.feeds));
  ProgramRequest request;
  request.given = MetasOf(call.feeds);
  request.fetch = call.fetch;
  request.loss = call.loss;
  request.wrt = session->trained();
  request.drop_unreached_wrt = true;
  request.mode = Mode::kTrain;
  // The session's dtype, whatever the feeds' (they are converted to it).
  request.float_dtype = session->float_dtype();
  Model model = SessionModel(*session);
  ASSIGN_OR_RETURN(auto program, ProgramFor(model, request));
  ASSIGN_OR_RETURN(auto reservation, ReserveRun(*program));
  RunControl control = Control(ctx, call.seed);
  std::optional<DiagnosticsRecorder> recorder;
  if (call.diagnostics) control.observer = &recorder.emplace();
  ASSIGN_OR_RETURN(RunResult run,
                   Run(program, call.feeds, *model.values, {}, control));
  const ValueSet& current = *model.values;
  const auto parameters = Trained(current, run.gradients);
  StepInput input{&parameters, &run.gradients, &current.optimizer_state,
                  current.step + 1, call.learning_rate};
  ASSIGN_OR_RETURN(StepResult step, ApplyStep(*session->optimizer(), input));
  auto next = std::make_shared<ValueSet>(current);
  for (auto& [name, t] : step.parameters) next->parameters[name] = std::move(t);
  for (auto& [key, t] : step.state) next->optimizer_state[key] = std::move(t);
  for (auto& [name, t] : run.buffers) next->buffers[name] = std::move(t);
  next->step = current.step + 1;
  next->version = current.version + 1;
  session->Publish(next);

  TrainStepReply reply;
  reply.loss = run.outputs.at(call.loss);
  for (const std::string& name : call.fetch) {
    reply.outputs[name] = run.outputs.at(name);
  }
  reply.step = next->step;
  reply.grad_norm = step.grad_norm;
  if (recorder) reply.diagnostics = recorder->Finish(run.gradients);
  return reply;
}

}  // namespace gradserve::runtime
