// What a running server tells its operators: the access log, and with
// --metrics_address the Prometheus metrics and their HTTP endpoint. The
// service calls OnCall once per finished call; this passes it on.
#ifndef GRADSERVE_SERVER_TELEMETRY_H_
#define GRADSERVE_SERVER_TELEMETRY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/runtime.h"
#include "server/access_log.h"
#include "server/call_observer.h"
#include "server/metrics/endpoint.h"
#include "server/metrics/registry.h"
#include "server/service_metrics.h"

namespace gradserve::server {

struct TelemetryOptions {
  // HOST:PORT of the /metrics endpoint; empty: no metrics.
  std::string metrics_address;
  LogLevel log_level = LogLevel::kWarning;
};

class Telemetry final : public CallObserver {
 public:
  // Starts the metrics endpoint when asked; `runtime` must outlive this.
  static absl::StatusOr<std::unique_ptr<Telemetry>> Start(
      const TelemetryOptions& options, runtime::Runtime* runtime);

  void OnCall(const CallRecord& call) override;
  bool metrics() const { return metrics_ != nullptr; }
  // The endpoint's port (the chosen one for port 0); 0 without metrics.
  int metrics_port() const;
  // No more scrapes (before what they read goes away); calls are still
  // observed.
  void StopEndpoint() { endpoint_.reset(); }

 private:
  explicit Telemetry(LogLevel level) : log_(level) {}

  AccessLog log_;
  metrics::Registry registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<metrics::Endpoint> endpoint_;  // stops before the rest
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_TELEMETRY_H_
