// gRPC's own hardening knobs: how many streams a connection may open, how
// often a client may ping, how long a connection may sit idle or live, how
// much metadata a call may carry, and the threads and memory gRPC itself
// may use. Set on the server builder before it starts.
#ifndef GRADSERVE_SERVER_TRANSPORT_LIMITS_H_
#define GRADSERVE_SERVER_TRANSPORT_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "grpcpp/server_builder.h"

namespace gradserve::server {

struct TransportLimits {
  // HTTP/2 streams (calls) open at once on one connection; more wait.
  int max_concurrent_streams = 100;
  // Keepalive enforcement: a client pinging more often than this without
  // data gets a strike; after max_ping_strikes the connection is closed
  // (GOAWAY "too_many_pings").
  int64_t min_ping_interval_ms = 10000;
  int max_ping_strikes = 2;
  // The server's own pings on quiet connections, and how long it waits for
  // the answer before closing the connection.
  int64_t keepalive_time_ms = int64_t{2} * 3600 * 1000;
  int64_t keepalive_timeout_ms = 20000;
  // A connection with no call for this long is closed (GOAWAY); one older
  // than max_connection_age is asked to go, and calls on it still get
  // max_connection_age_grace. 0 = never.
  int64_t max_connection_idle_ms = int64_t{3600} * 1000;
  int64_t max_connection_age_ms = 0;
  int64_t max_connection_age_grace_ms = 60000;
  // The headers of one call (names and values together).
  int max_metadata_bytes = 16 << 10;
  // gRPC's resource quota: threads its synchronous services (reflection)
  // may use, and memory for its buffers. 0 = gRPC's default.
  int max_threads = 16;
  int64_t max_memory_bytes = 0;
};

// INVALID_ARGUMENT naming the flag for a negative value or a stream count
// below 1.
absl::Status CheckTransportLimits(const TransportLimits& limits);
void ApplyTransportLimits(const TransportLimits& limits,
                          grpc::ServerBuilder* builder);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_TRANSPORT_LIMITS_H_
