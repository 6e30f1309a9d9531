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
  // A gRPC target: "host:port", or any name gRPC resolves ("dns:///...").
  std::string target = "localhost:50051";
  absl::Duration timeout = absl::Seconds(60);
  int max_message_bytes = 1 << 30;
};

class Client {
 public:
  explicit Client(const ClientOptions& options);

  absl::StatusOr<gradserve::v1::GetServerInfoResponse> Info();
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "");
  absl::StatusOr<gradserve::v1::DescribeResponse> Describe(
      const gradserve::v1::DescribeRequest& request);
  absl::StatusOr<gradserve::v1::ComputeResponse> Compute(
      const gradserve::v1::ComputeRequest& request);

 private:
  template <typename Request, typename Response, typename Call>
  absl::StatusOr<Response> Unary(const Request& request, Call call);

  const absl::Duration timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gradserve::v1::GradientService::Stub> service_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_CLIENT_H_
