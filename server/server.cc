#include "server/server.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/codec/snapshot_codec.h"
#include "server/reflection_v1.h"

namespace gradserve::server {

absl::StatusOr<std::unique_ptr<GradientServer>> GradientServer::Start(
    const ServerOptions& options) {
  if (options.max_message_bytes <= 0 || options.max_queue < 0 ||
      options.pool.workers < 0 || options.pool.threads_per_worker < 0) {
    return absl::InvalidArgumentError(
        "max_message_bytes must be > 0; max_queue, workers and "
        "threads_per_worker must be >= 0");
  }
  const PaceOptions& pace = options.service.refusal_pace;
  if (!(pace.per_second >= 0) || pace.burst < 0 ||
      pace.max_delay < absl::ZeroDuration() || pace.max_waiting < 0) {
    return absl::InvalidArgumentError(
        "refusal_pace_per_second, refusal_pace_burst and refusal_pace_max_ms "
        "must be >= 0");
  }
  absl::Status transport = CheckTransportLimits(options.transport);
  if (!transport.ok()) return transport;
  auto server = std::unique_ptr<GradientServer>(new GradientServer());
  server->drain_ = options.drain;
  server->pool_ = std::make_unique<runtime::ComputePool>(
      runtime::ChoosePoolShape(options.pool, runtime::AvailableCpus()),
      options.max_queue);
  // gRPC takes message sizes as int.
  const int max_message =
      static_cast<int>(std::min<int64_t>(options.max_message_bytes, INT_MAX));
  auto security = MakeServerSecurity(options.security);
  if (!security.ok()) return security.status();
  runtime::RuntimeOptions runtime_options = options.runtime;
  runtime_options.limits.max_result_bytes = max_message;
  // Tenants' own quotas from the tokens file.
  if (security->tokens != nullptr) {
    runtime_options.quotas.tenants = security->tokens->quotas();
  }
  server->runtime_ =
      std::make_unique<runtime::Runtime>(runtime_options, server->pool_.get());
  if (!options.persistence.state_dir.empty()) {
    absl::Status restored = server->runtime_->EnablePersistence(
        options.persistence,
        std::make_shared<SnapshotCodec>(server->runtime_->limits()));
    if (!restored.ok()) return restored;
  }
  if (options.allow_shared_memory) {
    absl::Status enabled =
        server->runtime_->EnableSharedMemory(options.shared_memory);
    if (!enabled.ok()) return enabled;
  }
  auto telemetry = Telemetry::Start(options.telemetry, server->runtime_.get());
  if (!telemetry.ok()) return telemetry.status();
  server->telemetry_ = *std::move(telemetry);
  ServiceOptions service_options = options.service;
  service_options.max_message_bytes = max_message;
  service_options.tls = options.security.tls();
  service_options.mutual_tls = options.security.mutual_tls();
  service_options.tokens = security->tokens;
  service_options.metrics = server->telemetry_->metrics();
  service_options.observer = server->telemetry_.get();
  server->service_ = std::make_unique<GradientServiceImpl>(
      server->runtime_.get(), service_options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::vector<std::string> addresses =
      absl::StrSplit(options.address, ',', absl::SkipWhitespace());
  if (addresses.empty()) {
    return absl::InvalidArgumentError("address: give at least one address");
  }
  // One port per address; port() reports the first TCP one's.
  std::vector<int> ports(addresses.size(), 0);
  for (size_t i = 0; i < addresses.size(); ++i) {
    builder.AddListeningPort(addresses[i], security->credentials, &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  // gRPC's default SO_REUSEPORT would let a second server share a busy port
  // silently; a port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyTransportLimits(options.transport, &builder);
  if (options.allow_shared_memory) {
    // The connection watch lists open connections through channelz (on by
    // default; said here so that no default can turn it off).
    builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 1);
  }
  builder.RegisterService(server->service_.get());
  server->reflection_v1_ = std::make_unique<ReflectionV1>(ServedServices());
  builder.RegisterService(server->reflection_v1_.get());
  server->server_ = builder.BuildAndStart();
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (server->server_ == nullptr || ports[i] == 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", addresses[i],
          " (address in use, not an address of this host, or a socket path "
          "that cannot be created?)"));
    }
    if (server->port_ == 0 && !absl::StartsWith(addresses[i], "unix:")) {
      server->port_ = ports[i];
    }
  }
  if (options.allow_shared_memory) {
    std::vector<std::string> listening;
    for (size_t i = 0; i < addresses.size(); ++i) {
      listening.push_back(absl::StartsWith(addresses[i], "unix:")
                              ? addresses[i]
                              : absl::StrCat(":", ports[i]));
    }
    server->watch_ = std::make_unique<ConnectionWatch>(
        std::move(listening), &server->runtime_->shared_memory());
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus("gradserve.v1.GradientService", true);
  return server;
}

GradientServer::~GradientServer() { Shutdown(absl::ZeroDuration()); }

void GradientServer::Drain(absl::Time deadline) {
  CallGate& calls = service_->calls();
  calls.WaitQuiet(std::min(deadline, absl::Now() + drain_.notice),
                  drain_.quiet);
  calls.Close();
  service_->DrainStreams();
  calls.WaitQuiet(deadline, drain_.quiet);
}

void GradientServer::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [&] {
    const absl::Time deadline = absl::Now() + grace;
    watch_.reset();
    if (server_ != nullptr) {
      server_->GetHealthCheckService()->Shutdown();
      Drain(deadline);
      server_->Shutdown(absl::ToChronoTime(deadline));
      server_->Wait();
    }
    if (telemetry_ != nullptr) telemetry_->StopEndpoint();  // reads the pool
    pool_.reset();  // runs what is left (cancelled calls end at once), joins
    // No step runs now: the last snapshot has every session's last step.
    if (runtime_ != nullptr && runtime_->persistence() != nullptr) {
      runtime_->persistence()->StopAndSnapshot();
    }
  });
}

}  // namespace gradserve::server
