#include "client/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/cord.h"
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

namespace {

constexpr char kOriginPayload[] = "type.gradserve.dev/client.origin";

// One "host:port" or "[v6]:port" as "ip:port" / "[ip]:port".
absl::StatusOr<std::string> Resolve(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("server address '", address, "' has no port"));
  }
  std::string host(
      absl::StripSuffix(absl::StripPrefix(address.substr(0, colon), "["), "]"));
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
  std::string resolved;
  if (found->ai_family == AF_INET6) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr, ip,
              sizeof(ip));
    resolved = absl::StrCat("[", ip, "]:", port);
  } else {
    inet_ntop(AF_INET,
              &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, ip,
              sizeof(ip));
    resolved = absl::StrCat(ip, ":", port);
  }
  freeaddrinfo(found);
  return resolved;
}

bool IsV6(const std::string& resolved) { return resolved[0] == '['; }

uint64_t Fnv1a(absl::string_view bytes, uint64_t hash) {
  for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// MurmurHash3's finalizer: every input bit flips each output bit about half
// the time, so the highest of several hashes is a fair draw.
uint64_t Mix(uint64_t h) {
  h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdull;
  h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(
    const std::optional<ClientTlsOptions>& tls) {
  if (!tls.has_value()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls->root_certs;
  ssl.pem_cert_chain = tls->cert_chain;
  ssl.pem_private_key = tls->private_key;
  return grpc::SslCredentials(ssl);
}

// A status from the server (OK stays OK), marked as the server's.
absl::Status ServerError(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status error(static_cast<absl::StatusCode>(status.error_code()),
                     status.error_message());
  error.SetPayload(kOriginPayload, absl::Cord("server"));
  return error;
}

std::string DrawRoute() {
  std::random_device device;
  std::uniform_int_distribution<uint32_t> any;
  return absl::StrCat(absl::Hex(any(device), absl::kZeroPad8));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListedAddresses(
    const std::string& target) {
  std::vector<std::string> addresses;
  if (target.find(',') == std::string::npos) return addresses;
  for (absl::string_view address :
       absl::StrSplit(target, ',', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(std::string resolved, Resolve(address));
    addresses.push_back(std::move(resolved));
  }
  return addresses;
}

absl::StatusOr<std::string> ChannelTarget(const std::string& target) {
  if (target.find(',') == std::string::npos) return target;
  ASSIGN_OR_RETURN(std::vector<std::string> addresses, ListedAddresses(target));
  const auto v6 = std::count_if(addresses.begin(), addresses.end(), IsV6);
  if (v6 != 0 && v6 != static_cast<int64_t>(addresses.size())) {
    return absl::InvalidArgumentError(
        "server addresses mix IPv4 and IPv6; use one family");
  }
  return absl::StrCat(v6 != 0 ? "ipv6:" : "ipv4:",
                      absl::StrJoin(addresses, ","));
}

bool FromServer(const absl::Status& status) {
  return status.GetPayload(kOriginPayload).has_value();
}

std::string RouteOfId(const std::string& id) {
  const size_t dot = id.rfind('.');
  return dot == std::string::npos ? "" : id.substr(0, dot);
}

size_t ReplicaFor(const std::string& route,
                  const std::vector<std::string>& addresses) {
  size_t best = 0;
  uint64_t best_hash = 0;
  for (size_t i = 0; i < addresses.size(); ++i) {
    // FNV-1a of address, a separator that no address holds, and the route.
    uint64_t hash = Fnv1a(addresses[i], 0xcbf29ce484222325ull);
    hash = Mix(Fnv1a(route, Fnv1a(absl::string_view("\n", 1), hash)));
    if (i == 0 || hash > best_hash) {
      best = i;
      best_hash = hash;
    }
  }
  return best;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(
    const ClientOptions& options) {
  if (!options.token.empty() && !options.tls.has_value()) {
    return absl::InvalidArgumentError(
        "a token needs TLS: it must not cross the network in plaintext");
  }
  if (options.tls.has_value() &&
      options.tls->cert_chain.empty() != options.tls->private_key.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs its private key, and a key its "
        "certificate");
  }
  ASSIGN_OR_RETURN(std::string target, ChannelTarget(options.target));
  ASSIGN_OR_RETURN(std::vector<std::string> addresses,
                   ListedAddresses(options.target));
  return std::unique_ptr<Client>(new Client(options, target, addresses));
}

Client::Client(const ClientOptions& options, const std::string& target,
               const std::vector<std::string>& addresses)
    : timeout_(options.timeout),
      authorization_(
          options.token.empty() ? "" : absl::StrCat("Bearer ", options.token)),
      addresses_(addresses) {
  grpc::ChannelArguments args;
  if (options.tls.has_value() && !options.tls->server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls->server_name);
  }
  const auto credentials = Credentials(options.tls);
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(
                  absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  // One channel per listed address, for routed calls.
  for (const std::string& address : addresses_) {
    replicas_.push_back(pb::GradientService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat(IsV6(address) ? "ipv6:" : "ipv4:", address), credentials,
        args)));
  }
  // Every call to the next address: spreads load over replicas when the
  // target names several (a list, or a DNS name with several records).
  args.SetLoadBalancingPolicyName("round_robin");
  channel_ = grpc::CreateCustomChannel(target, credentials, args);
  service_ = pb::GradientService::NewStub(channel_);
  health_ = health::Health::NewStub(channel_);
}

template <typename Response, typename Call>
absl::StatusOr<Response> Client::Unary(const std::string& route, Call call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  if (!route.empty()) context.AddMetadata(kRouteMetadata, route);
  if (!authorization_.empty()) {
    context.AddMetadata("authorization", authorization_);
  }
  Response response;
  RETURN_IF_ERROR(ServerError(call(&context, &response)));
  return response;
}

template <typename Request, typename Response>
absl::StatusOr<Response> Client::Routed(Method<Request, Response> method,
                                        const Request& request,
                                        const std::string& route) {
  Stub& stub = StubFor(route);
  return Unary<Response>(route, [&](auto* context, Response* response) {
    return (stub.*method)(context, request, response);
  });
}

Client::Stub& Client::StubFor(const std::string& route) {
  if (route.empty() || replicas_.empty()) return *service_;
  return *replicas_[ReplicaFor(route, addresses_)];
}

absl::StatusOr<pb::GetServerInfoResponse> Client::Info() {
  return Routed(&Stub::GetServerInfo, pb::GetServerInfoRequest(), "");
}

absl::StatusOr<health::HealthCheckResponse::ServingStatus> Client::Health(
    const std::string& service) {
  health::HealthCheckRequest request;
  request.set_service(service);
  auto response =
      Unary<health::HealthCheckResponse>("", [&](auto* context, auto* out) {
        return health_->Check(context, request, out);
      });
  if (!response.ok()) return response.status();
  return response->status();
}

absl::StatusOr<pb::DescribeResponse> Client::Describe(
    const pb::DescribeRequest& request) {
  return Routed(&Stub::Describe, request, RouteOfId(request.session_id()));
}

absl::StatusOr<pb::ComputeResponse> Client::Compute(
    const pb::ComputeRequest& request) {
  return Routed(&Stub::Compute, request, RouteOfId(request.session_id()));
}

absl::Status Client::ComputeStream(
    const std::vector<pb::ComputeRequest>& requests, int64_t count,
    const std::function<void(const pb::ComputeStreamResponse&)>& on_reply) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  if (!authorization_.empty()) {
    context.AddMetadata("authorization", authorization_);
  }
  auto stream = service_->ComputeStream(&context);
  std::thread writer([&] {
    for (int64_t k = 0; k < count; ++k) {
      if (!stream->Write(requests[k % requests.size()])) break;
    }
    stream->WritesDone();
  });
  pb::ComputeStreamResponse reply;
  while (stream->Read(&reply)) on_reply(reply);
  writer.join();
  return ServerError(stream->Finish());
}

absl::StatusOr<pb::CreateSessionResponse> Client::CreateSession(
    const pb::CreateSessionRequest& request, const std::string& route) {
  return Routed(&Stub::CreateSession, request,
                route.empty() ? DrawRoute() : route);
}

absl::StatusOr<pb::CloseSessionResponse> Client::CloseSession(
    const pb::CloseSessionRequest& request) {
  return Routed(&Stub::CloseSession, request, RouteOfId(request.session_id()));
}

absl::StatusOr<pb::ListSessionsResponse> Client::ListSessions() {
  if (replicas_.empty()) {
    return Routed(&Stub::ListSessions, pb::ListSessionsRequest(), "");
  }
  pb::ListSessionsResponse all;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    auto listed =
        Unary<pb::ListSessionsResponse>("", [&](auto* context, auto* out) {
          return replicas_[i]->ListSessions(context, {}, out);
        });
    if (!listed.ok()) {
      absl::Status error(listed.status().code(),
                         absl::StrCat("listing the sessions of ", addresses_[i],
                                      ": ", listed.status().message()));
      error.SetPayload(kOriginPayload, absl::Cord("server"));
      return error;
    }
    for (auto& session : *listed->mutable_sessions()) {
      *all.add_sessions() = std::move(session);
    }
  }
  return all;
}

absl::StatusOr<pb::GetParametersResponse> Client::GetParameters(
    const pb::GetParametersRequest& request) {
  return Routed(&Stub::GetParameters, request, RouteOfId(request.session_id()));
}

absl::StatusOr<pb::SetParametersResponse> Client::SetParameters(
    const pb::SetParametersRequest& request) {
  return Routed(&Stub::SetParameters, request, RouteOfId(request.session_id()));
}

absl::StatusOr<pb::TrainStepResponse> Client::TrainStep(
    const pb::TrainStepRequest& request) {
  return Routed(&Stub::TrainStep, request, RouteOfId(request.session_id()));
}

absl::StatusOr<pb::ForwardResponse> Client::Forward(
    const pb::ForwardRequest& request, const std::string& route) {
  if (request.has_session_id()) {
    return Routed(&Stub::Forward, request, RouteOfId(request.session_id()));
  }
  return Routed(&Stub::Forward, request, route.empty() ? DrawRoute() : route);
}

absl::StatusOr<pb::BackwardResponse> Client::Backward(
    const pb::BackwardRequest& request) {
  return Routed(&Stub::Backward, request, RouteOfId(request.activation_id()));
}

absl::StatusOr<pb::CheckGradientsResponse> Client::CheckGradients(
    const pb::CheckGradientsRequest& request) {
  return Routed(&Stub::CheckGradients, request,
                RouteOfId(request.session_id()));
}

absl::StatusOr<pb::HessianVectorProductResponse> Client::HessianVectorProduct(
    const pb::HessianVectorProductRequest& request) {
  return Routed(&Stub::HessianVectorProduct, request,
                RouteOfId(request.session_id()));
}

absl::StatusOr<pb::HessianEigenvaluesResponse> Client::HessianEigenvalues(
    const pb::HessianEigenvaluesRequest& request) {
  return Routed(&Stub::HessianEigenvalues, request,
                RouteOfId(request.session_id()));
}

}  // namespace gradserve::client
