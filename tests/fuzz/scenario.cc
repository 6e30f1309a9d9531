#include "tests/fuzz/scenario.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/codec/call_codec.h"
#include "server/codec/session_codec.h"
#include "server/codec/tensor_codec.h"
#include "server/codec/wire_message.h"
#include "tests/fuzz/requests.h"
#include "tests/fuzz/sites.h"

namespace gradserve::fuzz {
namespace {

namespace pb = ::gradserve::v1;
using Tensors = std::map<std::string, Tensor>;

// Bounds on one input's work: the mutator may repeat steps at will.
constexpr int kMaxSteps = 8;
constexpr int kMaxBackwards = 4;

// A finding tolerated for now: tests/fuzz/known_findings.txt lists bugs
// being fixed elsewhere, so that fuzzing goes on past them.
struct KnownFinding {};

// The case being run: its ops name a finding and match the known list.
thread_local const FuzzCase* current_case = nullptr;

std::string OpsOf(const FuzzCase& c) {
  std::set<std::string> ops;
  FuzzCase copy = c;
  for (pb::Graph* g : Collect(&copy).graphs) {
    for (const pb::Node& n : g->nodes()) ops.insert(n.op());
  }
  return absl::StrJoin(ops, ",");
}

class KnownFindings {
 public:
  static const KnownFindings& Get() {
    static const auto* known = new KnownFindings;
    return *known;
  }
  // The index of the first pattern that matches, or -1.
  int Match(const std::string& finding) const {
    for (size_t i = 0; i < patterns_.size(); ++i) {
      if (std::regex_search(finding, patterns_[i])) return static_cast<int>(i);
    }
    return -1;
  }
  const std::string& line(int i) const { return lines_[i]; }

 private:
  KnownFindings() {
    const char* env = std::getenv("GRADSERVE_FUZZ_KNOWN_FINDINGS");
    std::ifstream in(env != nullptr ? env : GRADSERVE_FUZZ_KNOWN_FINDINGS);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      patterns_.emplace_back(line);
      lines_.push_back(line);
    }
  }
  std::vector<std::regex> patterns_;
  std::vector<std::string> lines_;
};

[[noreturn]] void Finding(const std::string& what) {
  const std::string finding = absl::StrCat(
      what, " [ops: ", current_case ? OpsOf(*current_case) : "", "]");
  const KnownFindings& known = KnownFindings::Get();
  if (const int i = known.Match(finding); i >= 0) {
    static std::set<int>* reported = new std::set<int>;
    if (reported->insert(i).second) {
      std::fprintf(stderr, "known finding (tolerated, reported once): %s\n",
                   finding.c_str());
    }
    throw KnownFinding{};
  }
  std::fprintf(stderr, "\n=== request fuzzer finding: %s\n", finding.c_str());
  std::fflush(stderr);
  std::abort();
}

// A status is an answer, except the codes that only bugs may give.
bool Answered(const absl::Status& status, absl::string_view what) {
  switch (status.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
      Finding(absl::StrCat(what, " returned ", status.ToString()));
    default:
      return status.ok();
  }
}

std::string Wire(const Tensor& t) {
  pb::Tensor wire;
  server::TensorToProto(t, &wire);
  return wire.SerializeAsString();
}

// Where two float tensors of one meta first differ, for a finding's text.
std::string FirstDifference(const Tensor& a, const Tensor& b) {
  if (a.meta().ToString() != b.meta().ToString() ||
      (a.dtype() != DType::kFloat32 && a.dtype() != DType::kFloat64)) {
    return "";
  }
  const Tensor x = a.CastFloat(DType::kFloat64);
  const Tensor y = b.CastFloat(DType::kFloat64);
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    const double p = x.values<double>()[i], q = y.values<double>()[i];
    if (!(p == q || (std::isnan(p) && std::isnan(q)))) {
      return absl::StrCat(": at ", i, ", ", p, " vs ", q);
    }
  }
  return ": in bits only (NaN payloads, or -0 and 0)";
}

void ExpectSameNames(const Tensors& a, const Tensors& b,
                     absl::string_view what) {
  if (a.size() != b.size()) {
    Finding(absl::StrCat(what, ": ", a.size(), " tensors, then ", b.size()));
  }
  for (const auto& [name, t] : a) {
    if (!b.count(name)) Finding(absl::StrCat(what, ": '", name, "' missing"));
  }
}

void ExpectSame(const Tensors& a, const Tensors& b, absl::string_view what) {
  ExpectSameNames(a, b, what);
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (Wire(t) != Wire(it->second)) {
      Finding(absl::StrCat(
          what, ": '", name, "' differs (", t.meta().ToString(), " vs ",
          it->second.meta().ToString(), ")", FirstDifference(t, it->second)));
    }
  }
}

// Float tensors within float32 rounding of each other (others bitwise): an
// op may compute the gradients of a subset of its inputs another way than
// all of them (a reduction instead of oneDNN's fused backward), so a
// Backward over fewer tensors than its Forward planned for is not bit for
// bit the Compute of that subset. Two values that are both infinite or NaN
// agree: which of them a float32 computation past float32's range reaches
// depends on the order its terms overflow in (the float64 Compute of
// converted seeds gave -inf where the float32 Backward summed +inf and
// -inf terms into NaN).
void ExpectClose(const Tensors& a, const Tensors& b, absl::string_view what) {
  ExpectSameNames(a, b, what);
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    const DType dtype = t.dtype();
    if (t.meta().ToString() != u.meta().ToString() ||
        (dtype != DType::kFloat32 && dtype != DType::kFloat64)) {
      if (Wire(t) != Wire(u)) ExpectSame({{name, t}}, {{name, u}}, what);
      continue;
    }
    const Tensor x = t.CastFloat(DType::kFloat64);
    const Tensor y = u.CastFloat(DType::kFloat64);
    double scale = 0;
    for (double v : x.values<double>()) {
      if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
    }
    for (int64_t i = 0; i < x.num_elements(); ++i) {
      const double p = x.values<double>()[i], q = y.values<double>()[i];
      const bool same = (!std::isfinite(p) && !std::isfinite(q)) || p == q ||
                        std::abs(p - q) <= 1e-4 * scale + 1e-6;
      if (!same) {
        Finding(absl::StrCat(what, ": '", name, "' differs at ", i, ": ", p,
                             " vs ", q, " (largest |value| ", scale, ")"));
      }
    }
  }
}

// Every name a request asked for is in the reply.
template <typename Names>
void ExpectNamed(const Names& names, const Tensors& got,
                 absl::string_view what) {
  for (const std::string& name : names) {
    if (!got.count(name)) {
      Finding(absl::StrCat(what, ": '", name, "' was asked for, not returned"));
    }
  }
}

template <typename Request>
Request WithSession(Request r, const std::string& id) {
  if (r.session_id().empty()) r.set_session_id(id);
  return r;
}

template <typename Request>
Request WithSessionModel(Request r, const std::string& id) {
  if (r.model_case() == Request::MODEL_NOT_SET) r.set_session_id(id);
  return r;
}

class Runner {
 public:
  explicit Runner(runtime::ComputePool& pool)
      : runtime_(FuzzRuntimeOptions(), &pool) {
    ctx_.tenant = "fuzz";
    ctx_.check_cancelled = [] { return absl::OkStatus(); };
  }

  void Run(const FuzzCase& c) {
    switch (c.scenario_case()) {
      case FuzzCase::kCompute:
        return Compute(c.compute());
      case FuzzCase::kDescribe:
        return Describe(c.describe());
      case FuzzCase::kForwardBackward:
        return ForwardBackward(c.forward_backward(), "");
      case FuzzCase::kSession:
        return Session(c.session());
      default:
        return;
    }
  }

 private:
  const Limits& limits() const { return runtime_.limits(); }

  void Compute(const pb::ComputeRequest& r) {
    pb::ComputeRequest taken = r;  // decoding takes the tensors' bytes
    auto call = server::ComputeCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding ComputeRequest")) return;
    runtime::ComputeCall rerun = *call;
    auto reply = runtime_.Compute(ctx_, *std::move(call));
    if (!Answered(reply.status(), "Compute")) return;
    Encode([&](server::WireMessage* out) {
      server::ComputeReplyToWire(*reply, out);
    });
    const RunResult& result = reply->result;
    ExpectNamed(r.fetch(), result.outputs, "Compute outputs");
    ExpectNamed(r.wrt(), result.gradients, "Compute gradients");
    // The same request again is a program cache hit, and the same bits.
    auto again = runtime_.Compute(ctx_, std::move(rerun));
    if (!again.ok()) {
      Finding(absl::StrCat("Compute answered, then the same request failed: ",
                           again.status().ToString()));
    }
    ExpectSame(result.outputs, again->result.outputs, "Compute rerun outputs");
    ExpectSame(result.gradients, again->result.gradients,
               "Compute rerun gradients");
    ExpectSame(result.buffers, again->result.buffers, "Compute rerun buffers");
  }

  void Describe(const pb::DescribeRequest& r) {
    pb::DescribeRequest taken = r;
    auto call = server::DescribeCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding DescribeRequest")) return;
    auto summary = runtime_.Describe(ctx_, *std::move(call));
    if (!Answered(summary.status(), "Describe")) return;
    pb::DescribeResponse response;
    server::SummaryToProto(*summary, &response);
  }

  void ForwardBackward(const fuzz::ForwardBackward& fb,
                       const std::string& session_id) {
    const pb::ForwardRequest f = WithSessionModel(fb.forward(), session_id);
    pb::ForwardRequest taken = f;
    auto call = server::ForwardCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding ForwardRequest")) return;
    auto reply = runtime_.Forward(ctx_, *std::move(call));
    if (!Answered(reply.status(), "Forward")) return;
    ExpectNamed(f.fetch(), reply->outputs, "Forward outputs");
    Encode([&](server::WireMessage* out) {
      pb::ForwardResponse rest;
      server::ForwardReplyToWire(*reply, &rest, out);
    });
    for (int i = 0; i < fb.backward_size() && i < kMaxBackwards; ++i) {
      pb::BackwardRequest b = fb.backward(i);
      if (b.activation_id().empty()) b.set_activation_id(reply->activation_id);
      Backward(f, b);
    }
  }

  void Backward(const pb::ForwardRequest& f, const pb::BackwardRequest& b) {
    pb::BackwardRequest taken = b;
    auto call = server::BackwardCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding BackwardRequest")) return;
    auto gradients = runtime_.Backward(ctx_, *std::move(call));
    if (!Answered(gradients.status(), "Backward")) return;
    ExpectNamed(b.wrt(), *gradients, "Backward gradients");
    pb::BackwardResponse response;
    server::TensorsToProto(*gradients, response.mutable_gradients());
    // From the loss alone, a Backward of a subset of its Forward's wrt runs
    // the planned program: exactly what the planned Compute gives for those
    // names. A Compute of the subset alone is another program, whose kernels
    // and layouts may differ (a BatchNorm over a channel that rounds to a
    // constant turned their rounding into gradients of 1e-5): other seeds
    // of a subset are compared with it within rounding.
    const std::set<std::string> planned(f.wrt().begin(), f.wrt().end());
    const std::set<std::string> asked(b.wrt().begin(), b.wrt().end());
    const bool subset = !asked.empty() && asked != planned;
    if (subset && b.from_loss() && b.output_gradients().empty()) {
      pb::BackwardRequest whole = b;
      whole.clear_wrt();
      if (ExpectComputeGives(ComputeOf(f, whole), *gradients, asked, true)) {
        return;
      }
    }
    ExpectComputeGives(ComputeOf(f, b), *gradients, {}, !subset);
  }

  // Forward then Backward gives what one Compute gives, for the names
  // `wanted` (all when empty): exactly when `exact` and no seeds were
  // converted, else within rounding. With names `wanted`, `r` is the
  // planned Compute, which may refuse a planned name that only seeds this
  // Backward does not give could reach (the Forward could not rule them
  // out): false then, nothing compared.
  bool ExpectComputeGives(const pb::ComputeRequest& r, const Tensors& gradients,
                          const std::set<std::string>& wanted, bool exact) {
    pb::ComputeRequest taken = r;
    auto call = server::ComputeCallFromProto(taken, limits());
    if (!call.ok()) {
      Finding(absl::StrCat("Backward answered, its Compute does not decode: ",
                           call.status().ToString()));
    }
    auto result = runtime_.Compute(ctx_, *std::move(call));
    if (!result.ok()) {
      if (absl::IsResourceExhausted(result.status())) return true;
      if (!wanted.empty() && absl::IsInvalidArgument(result.status())) {
        return false;
      }
      Finding(absl::StrCat("Backward answered, the same Compute failed: ",
                           result.status().ToString()));
    }
    // A Backward runs in its Forward's float dtype (seeds of the other are
    // converted); the Compute of float64 seeds runs in float64: the two
    // then agree within float32's rounding.
    Tensors computed = result->result.gradients;
    for (auto it = computed.begin(); !wanted.empty() && it != computed.end();) {
      it = wanted.count(it->first) > 0 ? std::next(it) : computed.erase(it);
    }
    bool converted = false;
    for (auto& [name, t] : computed) {
      auto it = gradients.find(name);
      if (it != gradients.end() && IsFloat(t.dtype()) &&
          IsFloat(it->second.dtype()) && t.dtype() != it->second.dtype()) {
        t = t.CastFloat(it->second.dtype());
        converted = true;
      }
    }
    if (exact && !converted) {
      ExpectSame(gradients, computed, "Backward vs Compute gradients");
    } else {
      ExpectClose(gradients, computed,
                  "Backward of a subset or of converted seeds vs its Compute "
                  "gradients");
    }
    return true;
  }

  void Session(const SessionScenario& s) {
    pb::CreateSessionRequest create = s.create();
    auto call = server::CreateSessionCallFromProto(create, limits());
    if (!Answered(call.status(), "decoding CreateSessionRequest")) return;
    auto info = runtime_.CreateSession(ctx_, *std::move(call));
    if (!Answered(info.status(), "CreateSession")) return;
    pb::SessionInfo wire;
    server::SessionInfoToProto(*info, &wire);
    for (int i = 0; i < s.steps_size() && i < kMaxSteps; ++i) {
      Step(s.steps(i), info->session_id);
    }
    for (const runtime::SessionInfo& listed : runtime_.ListSessions(ctx_)) {
      server::SessionInfoToProto(listed, &wire);
    }
  }

  void Step(const SessionStep& step, const std::string& id) {
    switch (step.call_case()) {
      case SessionStep::kTrainStep:
        return TrainStep(WithSession(step.train_step(), id));
      case SessionStep::kSetParameters:
        return SetParameters(WithSession(step.set_parameters(), id));
      case SessionStep::kGetParameters:
        GetParameters(WithSession(step.get_parameters(), id));
        return;
      case SessionStep::kCompute:
        return Compute(WithSessionModel(step.compute(), id));
      case SessionStep::kForwardBackward:
        return ForwardBackward(step.forward_backward(), id);
      case SessionStep::kDescribe:
        return Describe(WithSessionModel(step.describe(), id));
      case SessionStep::kClose:
        Answered(runtime_.CloseSession(
                     ctx_, WithSession(step.close(), id).session_id()),
                 "CloseSession");
        return;
      default:
        return;
    }
  }

  void TrainStep(const pb::TrainStepRequest& r) {
    pb::TrainStepRequest taken = r;
    auto call = server::TrainStepCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding TrainStepRequest")) return;
    auto reply = runtime_.TrainStep(ctx_, *std::move(call));
    if (!Answered(reply.status(), "TrainStep")) return;
    ExpectNamed(r.fetch(), reply->outputs, "TrainStep outputs");
    Encode([&](server::WireMessage* out) {
      pb::TrainStepResponse rest;
      server::TrainStepReplyToWire(*reply, &rest, out);
    });
    pb::GetParametersRequest get;
    get.set_session_id(r.session_id());
    auto values = GetParameters(get);
    if (values && values->step != reply->step) {
      Finding(absl::StrCat("TrainStep answered step ", reply->step,
                           ", GetParameters then says ", values->step));
    }
  }

  // SetParameters replaces what it names; GetParameters reads it back.
  void SetParameters(const pb::SetParametersRequest& r) {
    pb::SetParametersRequest taken = r;
    auto call = server::SetParametersCallFromProto(taken, limits());
    if (!Answered(call.status(), "decoding SetParametersRequest")) return;
    const runtime::SetParametersCall given = *call;
    auto info = runtime_.SetParameters(ctx_, *std::move(call));
    if (!Answered(info.status(), "SetParameters")) return;
    pb::GetParametersRequest get;
    get.set_session_id(r.session_id());
    get.set_include_optimizer_state(true);
    auto values = GetParameters(get);
    if (!values) Finding("SetParameters answered, GetParameters failed");
    ExpectSubset(given.parameters, values->parameters, "parameters");
    ExpectSubset(given.buffers, values->buffers, "buffers");
    ExpectSubset(given.optimizer_state, values->optimizer_state,
                 "optimizer_state");
    if (given.step && *given.step != values->step) {
      Finding(absl::StrCat("SetParameters set step ", *given.step,
                           ", GetParameters says ", values->step));
    }
  }

  // The session keeps its float dtype: float tensors of the other one are
  // converted to it (float32 into a float64 session widened, exactly).
  static void ExpectSubset(const Tensors& given, const Tensors& got,
                           absl::string_view field) {
    Tensors want = given, read;
    for (auto& [name, t] : want) {
      auto it = got.find(name);
      if (it == got.end()) continue;
      read[name] = it->second;
      if (IsFloat(t.dtype()) && IsFloat(it->second.dtype())) {
        t = t.CastFloat(it->second.dtype());
      }
    }
    ExpectSame(want, read, absl::StrCat("SetParameters ", field, " read back"));
  }

  static bool IsFloat(DType dtype) {
    return dtype == DType::kFloat32 || dtype == DType::kFloat64;
  }

  std::optional<runtime::SessionValues> GetParameters(
      const pb::GetParametersRequest& r) {
    auto values =
        runtime_.GetParameters(ctx_, server::GetParametersCallFromProto(r));
    if (!Answered(values.status(), "GetParameters")) return std::nullopt;
    Encode([&](server::WireMessage* out) {
      pb::GetParametersResponse rest;
      server::SessionValuesToWire(*values, &rest, out);
    });
    return *std::move(values);
  }

  // A reply as the server writes it: the encoder runs over every answer.
  template <typename F>
  static void Encode(F&& write) {
    server::WireMessage wire;
    write(&wire);
    grpc::ByteBuffer bytes;
    wire.Finish(&bytes);
  }

  runtime::Runtime runtime_;
  runtime::CallContext ctx_;
};

}  // namespace

runtime::RuntimeOptions FuzzRuntimeOptions() {
  runtime::RuntimeOptions options;
  options.limits.max_tensor_elements = 4096;
  options.limits.max_graph_nodes = 64;
  options.limits.max_request_bytes = int64_t{1} << 20;
  options.limits.max_result_bytes = int64_t{16} << 20;
  options.program_cache_bytes = int64_t{16} << 20;
  options.max_inflight_bytes = int64_t{256} << 20;
  options.sessions.max_sessions = 4;
  options.sessions.max_bytes = int64_t{16} << 20;
  options.activations.max_bytes = int64_t{16} << 20;
  return options;
}

void RunCase(const FuzzCase& c, runtime::ComputePool& pool) {
  current_case = &c;
  try {
    Runner runner(pool);
    runner.Run(c);
  } catch (const KnownFinding&) {
  }
  current_case = nullptr;
}

}  // namespace gradserve::fuzz
