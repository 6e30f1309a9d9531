#include "client/client.h"

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace gradserve::client {

namespace pb = ::gradserve::v1;
namespace health = ::grpc::health::v1;

Client::Client(const ClientOptions& options) : timeout_(options.timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  channel_ = grpc::CreateCustomChannel(
      options.target, grpc::InsecureChannelCredentials(), args);
  service_ = pb::GradientService::NewStub(channel_);
  health_ = health::Health::NewStub(channel_);
}

template <typename Request, typename Response, typename Call>
absl::StatusOr<Response> Client::Unary(const Request& request, Call call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  Response response;
  grpc::Status status = call(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return response;
}

absl::StatusOr<pb::GetServerInfoResponse> Client::Info() {
  return Unary<pb::GetServerInfoRequest, pb::GetServerInfoResponse>(
      pb::GetServerInfoRequest(), [&](auto* c, const auto& req, auto* resp) {
        return service_->GetServerInfo(c, req, resp);
      });
}

absl::StatusOr<health::HealthCheckResponse::ServingStatus> Client::Health(
    const std::string& service) {
  health::HealthCheckRequest request;
  request.set_service(service);
  auto response =
      Unary<health::HealthCheckRequest, health::HealthCheckResponse>(
          request, [&](auto* c, const auto& req, auto* resp) {
            return health_->Check(c, req, resp);
          });
  if (!response.ok()) return response.status();
  return response->status();
}

absl::StatusOr<pb::DescribeResponse> Client::Describe(
    const pb::DescribeRequest& request) {
  return Unary<pb::DescribeRequest, pb::DescribeResponse>(
      request, [&](auto* c, const auto& req, auto* resp) {
        return service_->Describe(c, req, resp);
      });
}

absl::StatusOr<pb::ComputeResponse> Client::Compute(
    const pb::ComputeRequest& request) {
  return Unary<pb::ComputeRequest, pb::ComputeResponse>(
      request, [&](auto* c, const auto& req, auto* resp) {
        return service_->Compute(c, req, resp);
      });
}

}  // namespace gradserve::client
