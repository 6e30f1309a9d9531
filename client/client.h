// A small C++ client for gradserve: a deadline on every call, and the
// server's status carried back as an absl::Status.
//
// Sessions and activations live on the one replica that made them. Their
// ids are "<route>.<32 hex>", and every call that names one sends the
// metadata `gradserve-route: <route>`; CreateSession and Forward send the
// route the caller chose or one the client draws (8 hex digits), and the
// server starts the new id with it. A balancer in front of the replicas
// hashes on that metadata (deploy/nginx.conf), so all calls of a session
// reach its replica; calls without it (Compute of a graph, Info) spread.
//
// A target that is a list of addresses has no balancer in front, so the
// client is its own: besides the round-robin channel it keeps a channel per
// address, and sends a routed call to the address that rendezvous hashing
// picks for the route (ReplicaFor below). The choice depends only on the
// route and the set of addresses, so another client (another process, the
// list in another order) given the same set reaches the same replica, and
// an address left out moves only the routes that were on it. (nginx's ring
// places routes otherwise: a session made through a balancer is reached
// through it, not over a list.) A single
// address or a name ("dns:///...") hides the replicas from the client:
// routed calls then go over the one channel with the metadata, which is
// right behind a balancer, not for a name that resolves to several
// replicas directly (list them instead).
#ifndef GRADSERVE_CLIENT_CLIENT_H_
#define GRADSERVE_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"

namespace gradserve::client {

// TLS to the servers: PEM text (gradctl reads it from files).
struct ClientTlsOptions {
  std::string root_certs;  // the CA(s) trusted; empty = the system's roots
  // A client certificate and its key, for servers that ask for one
  // (mutual TLS); both or neither.
  std::string cert_chain;
  std::string private_key;
  // The name the server's certificate must hold; empty = the target's host.
  std::string server_name;
};

struct ClientOptions {
  // Where the servers are: "host:port"; several, comma-separated
  // ("10.0.0.1:50051,10.0.0.2:50051"); or any gRPC target
  // ("dns:///gradserve-headless:50051"). Calls go round-robin over all the
  // addresses a target resolves to.
  std::string target = "localhost:50051";
  absl::Duration timeout = absl::Seconds(60);
  int max_message_bytes = 1 << 30;
  // The longest wait between attempts to reconnect to a server that went
  // away (gRPC's default is 120 s: a restarted server would sit unused).
  absl::Duration max_reconnect_backoff = absl::Seconds(5);
  // Plaintext unless set.
  std::optional<ClientTlsOptions> tls;
  // Sent as `authorization: Bearer <token>` on every call; needs TLS.
  std::string token;
};

// The gRPC target for ClientOptions::target: a comma-separated list becomes
// an "ipv4:"/"ipv6:" address list (host names resolved here); anything else
// is passed on.
absl::StatusOr<std::string> ChannelTarget(const std::string& target);

// The addresses of a comma-separated list, resolved as ChannelTarget does
// ("10.0.0.1:50051", "[::1]:50051"); empty for a target that is no list.
absl::StatusOr<std::vector<std::string>> ListedAddresses(
    const std::string& target);

// The metadata key of routes (the server's kRouteMetadata, server/rpc.h).
inline constexpr char kRouteMetadata[] = "gradserve-route";

// Whether a status came back from a call (the server's answer, or the
// transport's: UNAVAILABLE, DEADLINE_EXCEEDED) rather than from the client
// itself (a file, a flag): the client marks the statuses of its calls.
bool FromServer(const absl::Status& status);

// The route part of a session or activation id ("" when it has none).
std::string RouteOfId(const std::string& id);

// Which of `addresses` holds the objects of `route`: the one with the
// highest hash of (address, route) (64-bit FNV-1a and MurmurHash3's
// finalizer), i.e. rendezvous hashing.
// Needs a non-empty list.
size_t ReplicaFor(const std::string& route,
                  const std::vector<std::string>& addresses);

class Client {
 public:
  // Fails only for a list with a host name that does not resolve, a token
  // without TLS, or half a client certificate.
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const ClientOptions& options);

  absl::StatusOr<gradserve::v1::GetServerInfoResponse> Info();
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "");
  absl::StatusOr<gradserve::v1::DescribeResponse> Describe(
      const gradserve::v1::DescribeRequest& request);
  // Compute and Describe of a graph spread; of a session_id they go to the
  // session's replica.
  absl::StatusOr<gradserve::v1::ComputeResponse> Compute(
      const gradserve::v1::ComputeRequest& request);
  // `count` requests over one ComputeStream, the k-th being
  // requests[k % requests.size()], written by a thread of its own while
  // this one reads the replies, in order, into `on_reply` (a request's
  // error arrives in band). The deadline covers the whole stream. Fails for
  // a stream that breaks; needs a non-empty `requests`.
  absl::Status ComputeStream(
      const std::vector<gradserve::v1::ComputeRequest>& requests, int64_t count,
      const std::function<void(const gradserve::v1::ComputeStreamResponse&)>&
          on_reply);

  // Sessions. `route` (1 to 64 of [A-Za-z0-9_-]) groups sessions on one
  // replica; empty: the client draws one.
  absl::StatusOr<gradserve::v1::CreateSessionResponse> CreateSession(
      const gradserve::v1::CreateSessionRequest& request,
      const std::string& route = "");
  absl::StatusOr<gradserve::v1::CloseSessionResponse> CloseSession(
      const gradserve::v1::CloseSessionRequest& request);
  // With a list of addresses, the sessions of every replica; else those of
  // the replica the call reaches (behind a balancer: any one of them).
  absl::StatusOr<gradserve::v1::ListSessionsResponse> ListSessions();
  absl::StatusOr<gradserve::v1::GetParametersResponse> GetParameters(
      const gradserve::v1::GetParametersRequest& request);
  absl::StatusOr<gradserve::v1::SetParametersResponse> SetParameters(
      const gradserve::v1::SetParametersRequest& request);
  absl::StatusOr<gradserve::v1::TrainStepResponse> TrainStep(
      const gradserve::v1::TrainStepRequest& request);

  // Forward of a graph keeps its activations under `route` (empty: a drawn
  // one); of a session, under the session's route (`route` is not used).
  absl::StatusOr<gradserve::v1::ForwardResponse> Forward(
      const gradserve::v1::ForwardRequest& request,
      const std::string& route = "");
  absl::StatusOr<gradserve::v1::BackwardResponse> Backward(
      const gradserve::v1::BackwardRequest& request);

  // Analysis: of a graph, spread; of a session_id, on the session's replica.
  absl::StatusOr<gradserve::v1::CheckGradientsResponse> CheckGradients(
      const gradserve::v1::CheckGradientsRequest& request);
  absl::StatusOr<gradserve::v1::HessianVectorProductResponse>
  HessianVectorProduct(
      const gradserve::v1::HessianVectorProductRequest& request);
  absl::StatusOr<gradserve::v1::HessianEigenvaluesResponse> HessianEigenvalues(
      const gradserve::v1::HessianEigenvaluesRequest& request);

 private:
  using Stub = gradserve::v1::GradientService::Stub;
  template <typename Request, typename Response>
  using Method = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                        Response*);

  Client(const ClientOptions& options, const std::string& target,
         const std::vector<std::string>& addresses);

  template <typename Response, typename Call>
  absl::StatusOr<Response> Unary(const std::string& route, Call call);
  // `method` on the stub for `route` ("" = round-robin, no metadata).
  template <typename Request, typename Response>
  absl::StatusOr<Response> Routed(Method<Request, Response> method,
                                  const Request& request,
                                  const std::string& route);
  Stub& StubFor(const std::string& route);

  const absl::Duration timeout_;
  const std::string authorization_;  // "" without a token
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> service_;  // round-robin over all addresses
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  // A list's addresses and a channel to each (empty for other targets).
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<Stub>> replicas_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_CLIENT_H_
