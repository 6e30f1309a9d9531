// gradserve's Prometheus metrics (README "Running in production" lists
// them): per RPC, calls by status code, latency and bytes, recorded by
// OnCall on the hot path (atomic adds into series made at start); and what
// the runtime holds (compute queue, busy workers, sessions, activations,
// program cache, memory) and each op type's compute time, read when scraped.
#ifndef GRADSERVE_SERVER_SERVICE_METRICS_H_
#define GRADSERVE_SERVER_SERVICE_METRICS_H_

#include <array>
#include <vector>

#include "runtime/runtime.h"
#include "server/call_observer.h"
#include "server/metrics/registry.h"

namespace gradserve::server {

class ServiceMetrics final : public CallObserver {
 public:
  // Adds the metrics to `registry`; `runtime` is read at each scrape and
  // must outlive the registry's use.
  ServiceMetrics(metrics::Registry* registry, runtime::Runtime* runtime);

  void OnCall(const CallRecord& call) override;

  // Upper bounds of the latency histograms, in seconds.
  static const std::vector<double>& LatencyBounds();

 private:
  static constexpr int kCodes = 17;  // grpc::StatusCode OK .. UNAUTHENTICATED
  struct PerMethod {
    std::array<metrics::Counter*, kCodes> calls;
    metrics::Histogram* latency;
    metrics::Counter* bytes_in;
    metrics::Counter* bytes_out;
    metrics::Counter* paced;
  };
  void AddCallMetrics(metrics::Registry* registry);
  static void AddRuntimeMetrics(metrics::Registry* registry,
                                runtime::Runtime* runtime);
  static void AddOpMetrics(metrics::Registry* registry);

  std::vector<PerMethod> methods_;  // by method index
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_SERVICE_METRICS_H_
