#include "server/telemetry.h"

namespace gradserve::server {

absl::StatusOr<std::unique_ptr<Telemetry>> Telemetry::Start(
    const TelemetryOptions& options, runtime::Runtime* runtime) {
  auto telemetry = std::unique_ptr<Telemetry>(new Telemetry(options.log_level));
  if (options.metrics_address.empty()) return telemetry;
  telemetry->metrics_ =
      std::make_unique<ServiceMetrics>(&telemetry->registry_, runtime);
  auto endpoint =
      metrics::Endpoint::Start(options.metrics_address, &telemetry->registry_);
  if (!endpoint.ok()) return endpoint.status();
  telemetry->endpoint_ = *std::move(endpoint);
  return telemetry;
}

void Telemetry::OnCall(const CallRecord& call) {
  if (metrics_ != nullptr) metrics_->OnCall(call);
  log_.OnCall(call);
}

int Telemetry::metrics_port() const {
  return endpoint_ != nullptr ? endpoint_->port() : 0;
}

}  // namespace gradserve::server
