// Dropping the shared-memory regions of connections that closed. gRPC's
// callback API tells a server nothing when a connection closes, but
// channelz lists a server's open connections ("sockets"), each named after
// its peer as ServerContext::peer() gives it ("ipv4:127.0.0.1:5012"). Once
// a second the watch lists the server's sockets and drops the regions
// whose registering call's peer is no longer among them.
//
// What that covers: a TCP connection has its own peer (the client's port),
// so its regions go within about a second of it closing, however it closed
// (channel closed, process exited or killed). A unix-socket connection's
// peer is only "unix:" (client sockets have no name), the same for every
// unix-socket client: their regions go once no unix-socket client is
// connected at all; until then the idle TTL (--shared_memory_ttl_seconds)
// is what drops them. If channelz does not know the server (turned off by
// a channel argument), only the TTL and UnregisterSharedMemory do.
#ifndef GRADSERVE_SERVER_CONNECTION_WATCH_H_
#define GRADSERVE_SERVER_CONNECTION_WATCH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "runtime/periodic.h"
#include "runtime/shared_memory.h"

namespace gradserve::server {

// The channelz id of the server in this process that listens on one of
// `listening` (TCP ports as ":50051", unix sockets as "unix:///path"),
// matched against the ends of its listen sockets' names.
std::optional<int64_t> FindChannelzServer(
    const std::vector<std::string>& listening);

// The peers of the server's open connections; nullopt when channelz has no
// such server.
std::optional<absl::flat_hash_set<std::string>> OpenConnections(
    int64_t server_id);

class ConnectionWatch {
 public:
  ConnectionWatch(std::vector<std::string> listening,
                  runtime::SharedMemoryRegistry* registry,
                  absl::Duration interval = absl::Seconds(1));

 private:
  // One pass: lists the connections and drops the regions of closed ones.
  void Check();

  const std::vector<std::string> listening_;
  runtime::SharedMemoryRegistry* const registry_;
  std::optional<int64_t> server_id_;  // found at the first pass
  bool warned_ = false;
  runtime::Periodic loop_;  // last: starts once the rest is set
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CONNECTION_WATCH_H_
