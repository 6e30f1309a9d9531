// The HTTP listener of --metrics_address: GET /metrics answers the
// registry's exposition (cpp-httplib, Debian's libcpp-httplib-dev, on one
// thread of its own); anything else is 404.
#ifndef GRADSERVE_SERVER_METRICS_ENDPOINT_H_
#define GRADSERVE_SERVER_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics/registry.h"

namespace httplib {
class Server;
}

namespace gradserve::metrics {

class Endpoint {
 public:
  // Listens on `address` (HOST:PORT; port 0 picks a free one), serving
  // `registry`, which must outlive the endpoint. UNAVAILABLE when it cannot
  // listen there, INVALID_ARGUMENT for an address without a port.
  static absl::StatusOr<std::unique_ptr<Endpoint>> Start(
      const std::string& address, const Registry* registry);
  ~Endpoint();  // stops listening and joins

  int port() const { return port_; }

 private:
  Endpoint() = default;

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace gradserve::metrics

#endif  // GRADSERVE_SERVER_METRICS_ENDPOINT_H_
