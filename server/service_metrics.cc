#include "server/service_metrics.h"

#include <string>

#include "absl/status/status.h"
#include "core/exec/op_times.h"
#include "server/gradient_service.h"

namespace gradserve::server {
namespace {

using metrics::Registry;
using metrics::Sample;
using metrics::Type;

constexpr int64_t kNanosecondsPerSecond = 1'000'000'000;

// A gauge or counter with one unlabelled value, read when scraped.
void AddValue(Registry* registry, const char* name, const char* help, Type type,
              std::function<double()> read) {
  registry->AddCollected(name, help, type, {},
                         [read = std::move(read)](std::vector<Sample>* out) {
                           out->push_back({{}, read()});
                         });
}

}  // namespace

const std::vector<double>& ServiceMetrics::LatencyBounds() {
  static const std::vector<double> bounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300};
  return bounds;
}

ServiceMetrics::ServiceMetrics(Registry* registry, runtime::Runtime* runtime) {
  AddCallMetrics(registry);
  AddRuntimeMetrics(registry, runtime);
  AddOpMetrics(registry);
}

void ServiceMetrics::AddCallMetrics(Registry* registry) {
  auto* calls = registry->AddCounter(
      "gradserve_calls_total",
      "Finished calls of gradserve.v1.GradientService by RPC and status code "
      "(a ComputeStream counts once, when it ends).",
      {"rpc", "code"}, 1, /*hide_zero=*/true);
  auto* latency = registry->AddHistogram(
      "gradserve_call_duration_seconds",
      "Time from a call's arrival to its status, by RPC.", {"rpc"},
      LatencyBounds(), kNanosecondsPerSecond);
  auto* received = registry->AddCounter(
      "gradserve_received_bytes_total",
      "Serialized request messages received, by RPC.", {"rpc"});
  auto* sent =
      registry->AddCounter("gradserve_sent_bytes_total",
                           "Serialized reply messages sent, by RPC.", {"rpc"});
  auto* paced = registry->AddCounter(
      "gradserve_paced_refusals_total",
      "Refusals by the wire check held back because their client host kept "
      "sending requests whose sizes do not match their data, by RPC.",
      {"rpc"});
  for (int m = 0; m < MethodCount(); ++m) {
    const std::string rpc = MethodName(m);
    PerMethod per;
    for (int code = 0; code < kCodes; ++code) {
      per.calls[code] = calls->Get(
          {rpc, absl::StatusCodeToString(static_cast<absl::StatusCode>(code))});
    }
    per.latency = latency->Get({rpc});
    per.bytes_in = received->Get({rpc});
    per.bytes_out = sent->Get({rpc});
    per.paced = paced->Get({rpc});
    methods_.push_back(per);
  }
}

void ServiceMetrics::AddRuntimeMetrics(Registry* registry,
                                       runtime::Runtime* rt) {
  AddValue(registry, "gradserve_compute_queue_depth",
           "Requests waiting for a compute worker.", Type::kGauge,
           [rt] { return rt->pool()->load().queued; });
  AddValue(registry, "gradserve_compute_workers_busy",
           "Compute workers running a request.", Type::kGauge,
           [rt] { return rt->pool()->load().running; });
  AddValue(registry, "gradserve_compute_workers", "Compute workers.",
           Type::kGauge, [rt] { return rt->pool()->shape().workers; });
  AddValue(registry, "gradserve_sessions", "Sessions held.", Type::kGauge,
           [rt] { return rt->sessions().count(); });
  AddValue(registry, "gradserve_session_bytes",
           "Bytes the sessions hold (parameters, buffers, optimizer state).",
           Type::kGauge, [rt] { return rt->sessions().bytes_reserved(); });
  AddValue(registry, "gradserve_activations",
           "Forward activations held for a Backward.", Type::kGauge,
           [rt] { return rt->activations().count(); });
  AddValue(registry, "gradserve_activation_bytes",
           "Bytes held and claimed by Forward activations.", Type::kGauge,
           [rt] { return rt->activations().bytes_held(); });
  AddValue(registry, "gradserve_memory_in_use_bytes",
           "Bytes queued and running requests hold in the memory budget.",
           Type::kGauge, [rt] { return rt->memory_budget().in_use(); });
  struct CacheValue {
    const char* name;
    const char* help;
    Type type;
    int64_t ProgramCacheStats::*field;
  };
  for (const CacheValue& v : std::vector<CacheValue>{
           {"gradserve_program_cache_hits_total",
            "Requests whose compiled program was in the cache.", Type::kCounter,
            &ProgramCacheStats::hits},
           {"gradserve_program_cache_misses_total",
            "Requests that compiled their program.", Type::kCounter,
            &ProgramCacheStats::misses},
           {"gradserve_program_cache_evictions_total",
            "Programs evicted from the cache.", Type::kCounter,
            &ProgramCacheStats::evictions},
           {"gradserve_program_cache_entries", "Programs in the cache.",
            Type::kGauge, &ProgramCacheStats::entries},
           {"gradserve_program_cache_bytes",
            "Estimated bytes of the cached programs.", Type::kGauge,
            &ProgramCacheStats::bytes}}) {
    AddValue(registry, v.name, v.help, v.type,
             [rt, field = v.field] { return rt->cache_stats().*field; });
  }
}

void ServiceMetrics::AddOpMetrics(Registry* registry) {
  // One reading for both families would need a collector of two metrics;
  // two readings of relaxed counters may differ by the ops run between.
  auto collect = [](bool seconds) {
    return [seconds](std::vector<Sample>* out) {
      for (const OpTimes::Total& t : OpTimes::Global().Totals()) {
        for (int d : {OpTimes::kForward, OpTimes::kBackward}) {
          const double value =
              seconds ? static_cast<double>(t.nanoseconds[d]) /
                            static_cast<double>(kNanosecondsPerSecond)
                      : static_cast<double>(t.runs[d]);
          out->push_back(
              {{t.op, d == OpTimes::kForward ? "forward" : "backward"}, value});
        }
      }
    };
  };
  registry->AddCollected(
      "gradserve_op_compute_seconds_total",
      "Wall time in each op type's forward and backward kernels, summed "
      "over the nodes run (process-wide).",
      Type::kCounter, {"op", "pass"}, collect(true));
  registry->AddCollected("gradserve_op_runs_total",
                         "Nodes run, by op type and pass.", Type::kCounter,
                         {"op", "pass"}, collect(false));
}

void ServiceMetrics::OnCall(const CallRecord& call) {
  if (call.method < 0 || call.method >= static_cast<int>(methods_.size())) {
    return;
  }
  PerMethod& per = methods_[call.method];
  const int code = static_cast<int>(call.code);
  if (code >= 0 && code < kCodes) per.calls[code]->Add(1);
  per.latency->Observe(call.nanoseconds);
  per.bytes_in->Add(call.bytes_in);
  per.bytes_out->Add(call.bytes_out);
  if (call.paced_refusals > 0) per.paced->Add(call.paced_refusals);
}

}  // namespace gradserve::server
