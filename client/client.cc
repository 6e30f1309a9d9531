#include "client/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace gradserve::client {

namespace pb = ::gradserve::v1;
namespace health = ::grpc::health::v1;

absl::StatusOr<std::string> ChannelTarget(const std::string& target) {
  if (target.find(',') == std::string::npos) return target;
  std::vector<std::string> v4, v6;
  for (absl::string_view address :
       absl::StrSplit(target, ',', absl::SkipEmpty())) {
    // host:port, or [v6]:port
    const size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("server address '", address, "' has no port"));
    }
    std::string host(absl::StripSuffix(
        absl::StripPrefix(address.substr(0, colon), "["), "]"));
    const std::string port(address.substr(colon + 1));
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 ||
        found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("server address '", address, "' does not resolve"));
    }
    char ip[INET6_ADDRSTRLEN] = {};
    if (found->ai_family == AF_INET6) {
      inet_ntop(AF_INET6,
                &reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr, ip,
                sizeof(ip));
      v6.push_back(absl::StrCat("[", ip, "]:", port));
    } else {
      inet_ntop(AF_INET,
                &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, ip,
                sizeof(ip));
      v4.push_back(absl::StrCat(ip, ":", port));
    }
    freeaddrinfo(found);
  }
  if (!v4.empty() && !v6.empty()) {
    return absl::InvalidArgumentError(
        "server addresses mix IPv4 and IPv6; use one family");
  }
  return v4.empty() ? absl::StrCat("ipv6:", absl::StrJoin(v6, ","))
                    : absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(
    const ClientOptions& options) {
  ASSIGN_OR_RETURN(std::string target, ChannelTarget(options.target));
  return std::unique_ptr<Client>(new Client(options, target));
}

Client::Client(const ClientOptions& options, const std::string& target)
    : timeout_(options.timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Every call to the next address: spreads load over replicas when the
  // target names several (a list, or a DNS name with several records).
  args.SetLoadBalancingPolicyName("round_robin");
  channel_ = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
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
