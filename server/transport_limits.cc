#include "server/transport_limits.h"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "grpcpp/resource_quota.h"

namespace gradserve::server {
namespace {

// gRPC takes its arguments as int.
int AsInt(int64_t value) {
  return static_cast<int>(std::min<int64_t>(value, INT_MAX));
}

// 0 (never) is gRPC's INT_MAX.
int MsOrNever(int64_t ms) { return ms == 0 ? INT_MAX : AsInt(ms); }

}  // namespace

absl::Status CheckTransportLimits(const TransportLimits& limits) {
  const struct {
    const char* flag;
    int64_t value;
    int64_t least;
  } fields[] = {
      {"max_concurrent_streams", limits.max_concurrent_streams, 1},
      {"keepalive_min_ping_interval_ms", limits.min_ping_interval_ms, 0},
      {"keepalive_max_ping_strikes", limits.max_ping_strikes, 0},
      {"keepalive_time_ms", limits.keepalive_time_ms, 0},
      {"keepalive_timeout_ms", limits.keepalive_timeout_ms, 0},
      {"max_connection_idle_seconds", limits.max_connection_idle_ms, 0},
      {"max_connection_age_seconds", limits.max_connection_age_ms, 0},
      {"max_connection_age_grace_seconds", limits.max_connection_age_grace_ms,
       0},
      {"max_metadata_bytes", limits.max_metadata_bytes, 1},
      {"grpc_max_threads", limits.max_threads, 0},
      {"grpc_max_memory_bytes", limits.max_memory_bytes, 0},
  };
  for (const auto& field : fields) {
    if (field.value < field.least) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", field.flag, " must be >= ", field.least,
                       " (it is ", field.value, ")"));
    }
  }
  return absl::OkStatus();
}

void ApplyTransportLimits(const TransportLimits& limits,
                          grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                              limits.max_concurrent_streams);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      AsInt(limits.min_ping_interval_ms));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                              limits.max_ping_strikes);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                              MsOrNever(limits.keepalive_time_ms));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              AsInt(limits.keepalive_timeout_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                              MsOrNever(limits.max_connection_idle_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                              MsOrNever(limits.max_connection_age_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                              MsOrNever(limits.max_connection_age_grace_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                              limits.max_metadata_bytes);
  if (limits.max_threads > 0 || limits.max_memory_bytes > 0) {
    grpc::ResourceQuota quota("gradserve");
    if (limits.max_threads > 0) quota.SetMaxThreads(limits.max_threads);
    if (limits.max_memory_bytes > 0) {
      quota.Resize(static_cast<size_t>(limits.max_memory_bytes));
    }
    builder->SetResourceQuota(quota);
  }
}

}  // namespace gradserve::server
