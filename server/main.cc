// gradserve: flags, signals, and the server's lifetime.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "core/dnnl_util.h"
#include "server/allocator.h"
#include "server/openmp_env.h"
#include "server/server.h"

ABSL_FLAG(std::string, address, "0.0.0.0:50051",
          "where to listen: HOST:PORT (port 0 picks a free port) or "
          "unix:///path/to.sock for same-host clients; several, "
          "comma-separated, listen on all (e.g. "
          "0.0.0.0:50051,unix:///run/gradserve.sock)");
ABSL_FLAG(int32_t, workers, 0,
          "requests computed at once; 0 = CPUs / threads_per_worker");
ABSL_FLAG(int32_t, threads_per_worker, 0,
          "OpenMP threads each request's oneDNN primitives use; 0 = min(CPUs, "
          "4), or CPUs / workers when --workers is set");
ABSL_FLAG(int32_t, max_queue, 256,
          "requests that may wait for a worker; beyond that, "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{1} << 30,
          "largest request or response message, in bytes");
ABSL_FLAG(int64_t, max_tensor_elements, gradserve::Limits{}.max_tensor_elements,
          "most elements in any one tensor, input or computed");
ABSL_FLAG(int64_t, max_graph_nodes, gradserve::Limits{}.max_graph_nodes,
          "most nodes in a graph");
ABSL_FLAG(int64_t, max_node_inputs, gradserve::Limits{}.max_node_inputs,
          "most inputs of one node (Concat's)");
ABSL_FLAG(int64_t, max_request_bytes, gradserve::Limits{}.max_request_bytes,
          "most memory one request's tensors may take: inputs, outputs and "
          "gradients, checked before computing");
ABSL_FLAG(int64_t, max_inflight_bytes, 0,
          "bytes that queued and running requests may hold in all (their "
          "messages and what their programs may allocate); beyond that, "
          "RESOURCE_EXHAUSTED; 0 = 3/4 of the machine's memory");
ABSL_FLAG(int64_t, program_cache_bytes,
          gradserve::runtime::RuntimeOptions{}.program_cache_bytes,
          "memory for compiled programs kept for reuse (estimated); 0 = "
          "compile every request");
ABSL_FLAG(uint32_t, session_ttl_seconds,
          gradserve::runtime::SessionOptions{}.default_ttl_seconds,
          "how long an idle session lives when its creator sets no ttl");
ABSL_FLAG(uint32_t, max_session_ttl_seconds,
          gradserve::runtime::SessionOptions{}.max_ttl_seconds,
          "the longest ttl a session may ask for");
ABSL_FLAG(int64_t, max_sessions,
          gradserve::runtime::SessionOptions{}.max_sessions,
          "sessions the server holds at most");
ABSL_FLAG(int64_t, max_session_bytes,
          gradserve::runtime::SessionOptions{}.max_bytes,
          "bytes all sessions together may hold (parameters, buffers, "
          "optimizer state)");
ABSL_FLAG(uint32_t, activation_ttl_seconds,
          gradserve::runtime::ActivationOptions{}.default_ttl_seconds,
          "how long a Forward's activations are kept when it sets no ttl");
ABSL_FLAG(uint32_t, max_activation_ttl_seconds,
          gradserve::runtime::ActivationOptions{}.max_ttl_seconds,
          "the longest ttl a Forward may ask for");
ABSL_FLAG(int64_t, max_activation_bytes,
          gradserve::runtime::ActivationOptions{}.max_bytes,
          "bytes all held Forward activations together may take");
ABSL_FLAG(int32_t, stream_window,
          gradserve::server::ServiceOptions{}.stream_window,
          "ComputeStream replies computed ahead of the one being sent");
ABSL_FLAG(int64_t, inline_compute_flops,
          gradserve::server::ServiceOptions{}.inline_compute_flops,
          "a Compute whose program is cached and plans at most this many "
          "operations runs on gRPC's thread, without the compute pool's "
          "hand-off; 0 = every Compute on the pool");
ABSL_FLAG(double, refusal_pace_per_second,
          gradserve::server::PaceOptions{}.per_second,
          "requests refused by the wire check (sizes that do not match their "
          "data) are answered at once up to --refusal_pace_burst per client "
          "host, then at this many per second, each held back at most "
          "--refusal_pace_max_ms: a client that keeps lying cannot loop "
          "faster; valid calls are never held; 0 = never held");
ABSL_FLAG(int64_t, refusal_pace_burst, gradserve::server::PaceOptions{}.burst,
          "refusals of one host answered at once before the pace applies");
ABSL_FLAG(
    double, refusal_pace_max_ms,
    absl::ToDoubleMilliseconds(gradserve::server::PaceOptions{}.max_delay),
    "the longest a paced refusal is held back");
ABSL_FLAG(int64_t, malloc_retain_mb, 512,
          "freed memory (MiB) kept for reuse rather than returned to the OS: "
          "large tensors then reuse warm pages; 0 = the C library's default");
ABSL_FLAG(std::string, state_dir, "",
          "directory where sessions are saved (one file each, written "
          "atomically) and restored from at start; empty = sessions live "
          "only as long as the process");
ABSL_FLAG(double, snapshot_seconds, 30,
          "with --state_dir, how often changed sessions are saved; they are "
          "saved too on SIGTERM/SIGINT once calls in flight finish");
ABSL_FLAG(bool, allow_shared_memory, false,
          "let same-host clients (unix socket or loopback) pass tensors "
          "through files in --shared_memory_dir: RegisterSharedMemory, "
          "shared_memory tensor carriers and output_placement; any such "
          "client can then make the server read and write files of its "
          "user in that directory");
ABSL_FLAG(std::string, shared_memory_dir,
          gradserve::runtime::SharedMemoryOptions{}.directory,
          "the directory whose files clients may register as shared-memory "
          "regions (plain names, no symlinks, regular files of the server's "
          "user); best one that only gradserve's clients can write");
ABSL_FLAG(int64_t, shared_memory_max_regions,
          gradserve::runtime::SharedMemoryOptions{}.max_regions,
          "shared-memory regions one tenant may hold (each holds an open "
          "file)");
ABSL_FLAG(int64_t, shared_memory_max_bytes,
          gradserve::runtime::SharedMemoryOptions{}.max_bytes,
          "bytes all registered shared-memory regions together may span");
ABSL_FLAG(uint32_t, shared_memory_ttl_seconds,
          gradserve::runtime::SharedMemoryOptions{}.ttl_seconds,
          "a shared-memory region unused this long is unregistered (regions "
          "also go when their TCP connection closes); 0 = never");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the server: with --tls_key, every "
          "address is served over TLS only");
ABSL_FLAG(std::string, tls_key, "",
          "PEM private key of --tls_cert (not encrypted)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM certificate(s) of the CA that signs client certificates: "
          "clients must then present one it signed (mutual TLS)");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "bearer tokens and their tenants, one `TENANT SHA256-OF-TOKEN` a "
          "line; every call but health checks then needs `authorization: "
          "Bearer <token>` metadata, and a tenant sees only its own "
          "sessions, activations and shared-memory regions (needs TLS)");
ABSL_FLAG(int64_t, tenant_max_sessions, 0,
          "sessions one tenant may hold; 0 = no per-tenant limit (the "
          "tokens file may set a tenant's own: max_sessions=N)");
ABSL_FLAG(int64_t, tenant_max_bytes, 0,
          "bytes one tenant may hold: its sessions' parameters, buffers and "
          "optimizer state, its Forward activations and shared-memory "
          "regions; 0 = no per-tenant limit (tokens file: max_bytes=N)");
ABSL_FLAG(int64_t, tenant_max_concurrent_calls, 0,
          "calls of one tenant queued or running at once (each ComputeStream "
          "request counts); 0 = no per-tenant limit (tokens file: "
          "max_concurrent_calls=N)");
ABSL_FLAG(int32_t, max_concurrent_streams,
          gradserve::server::TransportLimits{}.max_concurrent_streams,
          "calls one connection may have open at once (HTTP/2 streams); "
          "more wait on the client's side");
ABSL_FLAG(int64_t, keepalive_min_ping_interval_ms,
          gradserve::server::TransportLimits{}.min_ping_interval_ms,
          "a client pinging more often than this without data gets a strike");
ABSL_FLAG(int32_t, keepalive_max_ping_strikes,
          gradserve::server::TransportLimits{}.max_ping_strikes,
          "strikes after which a connection is closed (GOAWAY too_many_pings)");
ABSL_FLAG(int64_t, keepalive_time_ms,
          gradserve::server::TransportLimits{}.keepalive_time_ms,
          "the server pings a connection quiet this long; 0 = never");
ABSL_FLAG(int64_t, keepalive_timeout_ms,
          gradserve::server::TransportLimits{}.keepalive_timeout_ms,
          "a connection whose ping is not answered this soon is closed");
ABSL_FLAG(int64_t, max_connection_idle_seconds,
          gradserve::server::TransportLimits{}.max_connection_idle_ms / 1000,
          "a connection with no call for this long is closed (its "
          "shared-memory regions go with it); 0 = never");
ABSL_FLAG(int64_t, max_connection_age_seconds, 0,
          "a connection older than this is asked to go (clients reconnect, "
          "balancers rebalance; its shared-memory regions go with it); 0 = "
          "never");
ABSL_FLAG(int64_t, max_connection_age_grace_seconds,
          gradserve::server::TransportLimits{}.max_connection_age_grace_ms /
              1000,
          "calls on a connection past its age get this long to finish");
ABSL_FLAG(int32_t, max_metadata_bytes,
          gradserve::server::TransportLimits{}.max_metadata_bytes,
          "the most header bytes (metadata names and values) one call may "
          "send");
ABSL_FLAG(int32_t, grpc_max_threads,
          gradserve::server::TransportLimits{}.max_threads,
          "threads gRPC's resource quota lets its synchronous services "
          "(reflection) use; 0 = gRPC's default");
ABSL_FLAG(int64_t, grpc_max_memory_bytes, 0,
          "memory gRPC's resource quota lets its buffers take; 0 = gRPC's "
          "default (set it above --max_inflight_bytes: under it gRPC resets "
          "streams that the memory budget would have answered)");
ABSL_FLAG(double, shutdown_grace_seconds, 20,
          "on SIGTERM/SIGINT, how long calls in flight may take to finish");
ABSL_FLAG(double, drain_notice_seconds, 1,
          "on SIGTERM/SIGINT, health turns NOT_SERVING and calls are still "
          "accepted this long (less when none comes for 0.1 s), for those on "
          "their way and balancers that have not yet seen it; then new calls "
          "get UNAVAILABLE (retry on another replica) while those accepted "
          "finish; within --shutdown_grace_seconds");
ABSL_FLAG(std::string, metrics_address, "",
          "HOST:PORT where Prometheus metrics are served over HTTP at "
          "/metrics (e.g. 0.0.0.0:9090; port 0 picks a free one); empty = "
          "no metrics");
ABSL_FLAG(std::string, log_level, "warning",
          "which calls the access log on stderr writes, one key=value line "
          "each: error (the server failed: INTERNAL, UNKNOWN, DATA_LOSS), "
          "warning (also RESOURCE_EXHAUSTED, UNAVAILABLE, "
          "DEADLINE_EXCEEDED), info (every call)");

namespace {

// Signals this close to the first are the same request to shut down.
constexpr std::chrono::seconds kSameSignal(1);

bool IsMainFile(absl::string_view file) {
  return absl::EndsWith(file, "server/main.cc");
}

// Source paths may be relative to a build directory ("../server/main.cc").
std::string NormalizeFilename(absl::string_view file) {
  while (absl::ConsumePrefix(&file, "../")) {
  }
  return std::string(file);
}

// 3/4 of physical memory.
int64_t DefaultInflightBytes() {
  const int64_t pages = sysconf(_SC_PHYS_PAGES);
  const int64_t page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? pages / 4 * 3 * page : int64_t{8} << 30;
}

// How calls arrive: "plaintext", "TLS", "mutual TLS", with ", tokens".
std::string Transport(const gradserve::server::SecurityOptions& security) {
  std::string transport = security.mutual_tls() ? "mutual TLS"
                          : security.tls()      ? "TLS"
                                                : "plaintext";
  return security.tokens() ? transport + ", tokens" : transport;
}

}  // namespace

int main(int argc, char** argv) {
  gradserve::server::UsePassiveOpenMpWaits(argv);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detection on: every lock and unlock (gRPC's too) then updates a global
  // lock-order graph under one spinlock, 3% of a small call's CPU time.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Signals are taken by sigwait below, never by a handler: block them
  // before any thread starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = IsMainFile;
  usage.contains_helpshort_flags = IsMainFile;
  usage.normalize_filename = NormalizeFilename;
  usage.version_string = [] {
    return std::string("gradserve " GRADSERVE_VERSION "\n");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "forward and backward passes of neural-network graphs over "
      "gRPC (gradserve.v1.GradientService), on oneDNN.\n"
      "Usage: gradserve [--address=HOST:PORT] [flags]");
  absl::ParseCommandLine(argc, argv);

  gradserve::server::RetainFreedMemory(absl::GetFlag(FLAGS_malloc_retain_mb));
  gradserve::server::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.pool.workers = absl::GetFlag(FLAGS_workers);
  options.pool.threads_per_worker = absl::GetFlag(FLAGS_threads_per_worker);
  options.max_queue = absl::GetFlag(FLAGS_max_queue);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  gradserve::runtime::RuntimeOptions& rt = options.runtime;
  rt.limits.max_tensor_elements = absl::GetFlag(FLAGS_max_tensor_elements);
  rt.limits.max_graph_nodes = absl::GetFlag(FLAGS_max_graph_nodes);
  rt.limits.max_node_inputs = absl::GetFlag(FLAGS_max_node_inputs);
  rt.limits.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  rt.max_inflight_bytes = absl::GetFlag(FLAGS_max_inflight_bytes);
  if (rt.max_inflight_bytes <= 0)
    rt.max_inflight_bytes = DefaultInflightBytes();
  rt.program_cache_bytes = absl::GetFlag(FLAGS_program_cache_bytes);
  rt.sessions.default_ttl_seconds = absl::GetFlag(FLAGS_session_ttl_seconds);
  rt.sessions.max_ttl_seconds = absl::GetFlag(FLAGS_max_session_ttl_seconds);
  rt.sessions.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  rt.sessions.max_bytes = absl::GetFlag(FLAGS_max_session_bytes);
  rt.activations.default_ttl_seconds =
      absl::GetFlag(FLAGS_activation_ttl_seconds);
  rt.activations.max_ttl_seconds =
      absl::GetFlag(FLAGS_max_activation_ttl_seconds);
  rt.activations.max_bytes = absl::GetFlag(FLAGS_max_activation_bytes);
  rt.quotas.defaults = {absl::GetFlag(FLAGS_tenant_max_sessions),
                        absl::GetFlag(FLAGS_tenant_max_bytes),
                        absl::GetFlag(FLAGS_tenant_max_concurrent_calls)};
  options.service.stream_window = absl::GetFlag(FLAGS_stream_window);
  options.service.inline_compute_flops =
      absl::GetFlag(FLAGS_inline_compute_flops);
  options.service.refusal_pace.per_second =
      absl::GetFlag(FLAGS_refusal_pace_per_second);
  options.service.refusal_pace.burst = absl::GetFlag(FLAGS_refusal_pace_burst);
  options.service.refusal_pace.max_delay =
      absl::Milliseconds(absl::GetFlag(FLAGS_refusal_pace_max_ms));
  options.persistence.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.persistence.snapshot_interval =
      absl::Seconds(absl::GetFlag(FLAGS_snapshot_seconds));
  options.allow_shared_memory = absl::GetFlag(FLAGS_allow_shared_memory);
  options.shared_memory.directory = absl::GetFlag(FLAGS_shared_memory_dir);
  options.shared_memory.max_regions =
      absl::GetFlag(FLAGS_shared_memory_max_regions);
  options.shared_memory.max_bytes =
      absl::GetFlag(FLAGS_shared_memory_max_bytes);
  options.shared_memory.ttl_seconds =
      absl::GetFlag(FLAGS_shared_memory_ttl_seconds);
  options.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.security.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.security.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  gradserve::server::TransportLimits& transport = options.transport;
  transport.max_concurrent_streams =
      absl::GetFlag(FLAGS_max_concurrent_streams);
  transport.min_ping_interval_ms =
      absl::GetFlag(FLAGS_keepalive_min_ping_interval_ms);
  transport.max_ping_strikes = absl::GetFlag(FLAGS_keepalive_max_ping_strikes);
  transport.keepalive_time_ms = absl::GetFlag(FLAGS_keepalive_time_ms);
  transport.keepalive_timeout_ms = absl::GetFlag(FLAGS_keepalive_timeout_ms);
  transport.max_connection_idle_ms =
      absl::GetFlag(FLAGS_max_connection_idle_seconds) * 1000;
  transport.max_connection_age_ms =
      absl::GetFlag(FLAGS_max_connection_age_seconds) * 1000;
  transport.max_connection_age_grace_ms =
      absl::GetFlag(FLAGS_max_connection_age_grace_seconds) * 1000;
  transport.max_metadata_bytes = absl::GetFlag(FLAGS_max_metadata_bytes);
  transport.max_threads = absl::GetFlag(FLAGS_grpc_max_threads);
  transport.max_memory_bytes = absl::GetFlag(FLAGS_grpc_max_memory_bytes);
  const double grace = absl::GetFlag(FLAGS_shutdown_grace_seconds);
  options.drain.notice =
      absl::Seconds(std::max(0.0, absl::GetFlag(FLAGS_drain_notice_seconds)));
  options.telemetry.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  auto log_level =
      gradserve::server::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!log_level.ok()) {
    std::fprintf(stderr, "gradserve: %s\n",
                 std::string(log_level.status().message()).c_str());
    return 1;
  }
  options.telemetry.log_level = *log_level;

  auto server = gradserve::server::GradientServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "gradserve: %s\n",
                 std::string(server.status().message()).c_str());
    return 1;
  }
  const auto& shape = (*server)->pool_shape();
  std::fprintf(stderr,
               "gradserve %s listening on %s (port %d, %s): %d worker(s) x %d "
               "thread(s), oneDNN %s on %s\n",
               GRADSERVE_VERSION, options.address.c_str(), (*server)->port(),
               Transport(options.security).c_str(), shape.workers,
               shape.threads_per_worker, gradserve::DnnlVersion().c_str(),
               gradserve::DnnlCpuIsa().c_str());
  if ((*server)->metrics_port() != 0) {
    std::fprintf(stderr, "gradserve: metrics on %s (port %d) at /metrics\n",
                 options.telemetry.metrics_address.c_str(),
                 (*server)->metrics_port());
  }

  int signal = 0;
  sigwait(&signals, &signal);
  const auto first = std::chrono::steady_clock::now();
  std::fprintf(stderr,
               "gradserve: %s, shutting down: NOT_SERVING, new calls refused "
               "after %.1f s, calls in flight get %.0f s\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT",
               std::min(grace, absl::ToDoubleSeconds(options.drain.notice)),
               grace);
  // A second signal during the grace period stops at once, unless it came
  // with the first: `timeout` signals its child and then its process group,
  // and a terminal's Ctrl-C or a supervisor may reach the process twice.
  std::thread([&signals, first] {
    for (;;) {
      int again = 0;
      sigwait(&signals, &again);
      if (std::chrono::steady_clock::now() - first < kSameSignal) continue;
      std::fprintf(stderr, "gradserve: second signal, exiting now\n");
      std::_Exit(1);
    }
  }).detach();
  (*server)->Shutdown(absl::Seconds(grace));
  std::fprintf(stderr, "gradserve: stopped\n");
  return 0;
}
