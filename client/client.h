// A small C++ client for gradserve: one channel, a deadline on every call,
// and the server's status carried back as an absl::Status.
#ifndef GRADSERVE_CLIENT_CLIENT_H_
#define GRADSERVE_CLIENT_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"

namespace gradserve::client {

struct ClientOptions {
  // Where the servers are: "host:port"; several, comma-separated
  // ("10.0.0.1:50051,10.0.0.2:50051"); or any gRPC target
  // ("dns:///gradserve-headless:50051"). Calls go round-robin over all the
  // addresses a target resolves to.
  std::string target = "localhost:50051";
  absl::Duration timeout = absl::Seconds(60);
  int max_message_bytes = 1 << 30;
};

// The gRPC target for ClientOptions::target: a comma-separated list becomes
// an "ipv4:"/"ipv6:" address list (host names resolved here); anything else
// is passed on.
absl::StatusOr<std::string> ChannelTarget(const std::string& target);

class Client {
 public:
  // Fails only for a list with a host name that does not resolve.
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const ClientOptions& options);

  absl::StatusOr<gradserve::v1::GetServerInfoResponse> Info();
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "");
  absl::StatusOr<gradserve::v1::DescribeResponse> Describe(
      const gradserve::v1::DescribeRequest& request);
  absl::StatusOr<gradserve::v1::ComputeResponse> Compute(
      const gradserve::v1::ComputeRequest& request);

 private:
  Client(const ClientOptions& options, const std::string& target);

  template <typename Request, typename Response, typename Call>
  absl::StatusOr<Response> Unary(const Request& request, Call call);

  const absl::Duration timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gradserve::v1::GradientService::Stub> service_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_CLIENT_H_
