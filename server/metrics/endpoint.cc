#include "server/metrics/endpoint.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gradserve::metrics {

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Start(
    const std::string& address, const Registry* registry) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics_address: '", address, "' is not HOST:PORT (e.g. :9090)"));
  }
  std::string host = address.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]
  }
  auto endpoint = std::unique_ptr<Endpoint>(new Endpoint());
  endpoint->http_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *endpoint->http_;
  // One thread answers scrapes (httplib's default pool has 8 or more).
  http.new_task_queue = [] { return new httplib::ThreadPool(1); };
  // httplib's default adds SO_REUSEPORT, with which a second server would
  // share a port in use silently; it must be an error, as for gRPC's.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.Get("/metrics",
           [registry](const httplib::Request&, httplib::Response& response) {
             response.set_content(registry->Expose(), kExpositionContentType);
           });
  endpoint->port_ = port == 0 ? http.bind_to_any_port(host)
                              : (http.bind_to_port(host, port) ? port : -1);
  if (endpoint->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics_address: cannot listen on ", address,
                     " (address in use, or not an address of this host?)"));
  }
  auto returned = std::make_shared<std::atomic<bool>>(false);
  endpoint->thread_ = std::thread([&http, returned] {
    http.listen_after_bind();
    returned->store(true);
  });
  // stop() before the loop runs would not stop it.
  while (!http.is_running() && !returned->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return endpoint;
}

Endpoint::~Endpoint() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gradserve::metrics
