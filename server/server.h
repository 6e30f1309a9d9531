// A running gradserve: the gRPC server, its compute pool, health and
// reflection. main.cc parses flags into ServerOptions; tests start one
// in-process on port 0.
#ifndef GRADSERVE_SERVER_SERVER_H_
#define GRADSERVE_SERVER_SERVER_H_

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/graph.h"
#include "grpcpp/server.h"
#include "runtime/compute_pool.h"
#include "runtime/runtime.h"
#include "server/connection_watch.h"
#include "server/gradient_service.h"
#include "server/reflection_v1.h"
#include "server/security.h"
#include "server/telemetry.h"
#include "server/transport_limits.h"

namespace gradserve::server {

// How Shutdown drains the server. Health turns NOT_SERVING at once, and
// calls are still admitted for `notice`: those already on their way, and
// those of balancers and clients that have not yet seen the change, are
// served (the notice ends sooner once no call is in flight and none came for
// `quiet`). Then new calls are refused with UNAVAILABLE ("retry on another
// replica"; nothing of them ran) until the admitted ones have finished and
// no call came for `quiet`: clients still sending hear UNAVAILABLE rather
// than race gRPC's own shutdown. All within Shutdown's grace.
struct DrainOptions {
  absl::Duration notice = absl::Seconds(1);
  absl::Duration quiet = absl::Milliseconds(100);
};

struct ServerOptions {
  // Where to listen: HOST:PORT or unix:///path, several comma-separated.
  std::string address = "0.0.0.0:50051";
  runtime::PoolShape pool = {0, 0};  // zeros: chosen from the available CPUs
  int max_queue = 256;
  int64_t max_message_bytes = int64_t{1} << 30;
  // limits.max_result_bytes is set from max_message_bytes.
  runtime::RuntimeOptions runtime;
  // Sessions saved in persistence.state_dir (off when empty), restored at
  // Start, snapshotted periodically and at Shutdown.
  runtime::PersistenceOptions persistence;
  // Same-host shared memory (RegisterSharedMemory, shared_memory carriers,
  // output_placement): off unless allowed.
  bool allow_shared_memory = false;
  runtime::SharedMemoryOptions shared_memory;
  // TLS, mutual TLS and tokens (server/security.h); all off by default.
  SecurityOptions security;
  // The access log's level and the metrics endpoint (server/telemetry.h).
  TelemetryOptions telemetry;
  // gRPC's streams, keepalive, connection, metadata and resource limits.
  TransportLimits transport;
  ServiceOptions service;
  DrainOptions drain;
};

class GradientServer {
 public:
  // Binds and starts serving; health reports SERVING once this returns.
  static absl::StatusOr<std::unique_ptr<GradientServer>> Start(
      const ServerOptions& options);
  ~GradientServer();

  // The bound port of the first TCP address (the chosen one when it asked
  // for port 0); 0 when the server listens on unix sockets only.
  int port() const { return port_; }
  const runtime::PoolShape& pool_shape() const { return pool_->shape(); }
  // The metrics endpoint's port; 0 without one.
  int metrics_port() const { return telemetry_->metrics_port(); }
  runtime::Runtime& runtime() { return *runtime_; }

  // Drains (DrainOptions): health turns NOT_SERVING, calls already on their
  // way are still admitted for a short notice, then new calls are refused
  // with UNAVAILABLE; the admitted calls get `grace` (from now, the notice
  // included) to finish before gRPC's shutdown cancels what is left.
  // Returns when all are done. Then, with persistence on, the sessions are
  // snapshotted a last time. Safe to call more than once.
  void Shutdown(absl::Duration grace);

 private:
  GradientServer() = default;
  // Until the calls admitted before the gate closed are done, or `deadline`.
  void Drain(absl::Time deadline);

  // First: the last calls, finished by the pool's shutdown, still report.
  std::unique_ptr<Telemetry> telemetry_;
  std::unique_ptr<runtime::ComputePool> pool_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::unique_ptr<GradientServiceImpl> service_;
  std::unique_ptr<ReflectionV1> reflection_v1_;
  std::unique_ptr<grpc::Server> server_;
  // With shared memory on: drops the regions of closed connections.
  std::unique_ptr<ConnectionWatch> watch_;
  int port_ = 0;
  DrainOptions drain_;
  std::once_flag shutdown_once_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_SERVER_H_
