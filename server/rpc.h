// What every RPC shares. Requests arrive as raw bytes and gradserve parses
// them itself on the compute pool (unparseable bytes are INVALID_ARGUMENT
// naming the message type, not gRPC's bare UNIMPLEMENTED); the bytes a
// message holds are reserved in the server-wide memory budget before the
// work is queued; replies are serialized by gradserve into the call's
// buffer.
#ifndef GRADSERVE_SERVER_RPC_H_
#define GRADSERVE_SERVER_RPC_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "runtime/calls.h"
#include "server/security.h"

namespace gradserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The caller (tenant, connection, route metadata) and a check the executor
// polls between nodes: the call's deadline, and cancellation by the client.
// With `tokens`, the tenant of the call's token; UNAUTHENTICATED without
// one (the token processor refuses such calls first).
absl::StatusOr<runtime::CallContext> CallContextOf(
    grpc::CallbackServerContext* context, const TokenTable* tokens);

// Whether a gRPC peer ("ipv4:127.0.0.1:5012", "unix:") is on this host:
// a unix socket or a loopback address.
bool IsSameHostPeer(absl::string_view peer);

// Parses `bytes` into `message`; INVALID_ARGUMENT naming the message type.
absl::Status ParseMessage(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message);
absl::Status SerializeMessage(const google::protobuf::Message& message,
                              grpc::ByteBuffer* out);

// A top-level string field of a serialized message, read by skipping over
// the other fields (no copies of tensor bytes); "" when absent or the bytes
// do not parse.
std::string PeekStringField(const grpc::ByteBuffer& bytes, int field_number);

// The metadata key a client sets on CreateSession and Forward to choose the
// route part of new ids (balancers hash on it), and on every call that names
// a session or activation (the client library sends the id's route).
inline constexpr char kRouteMetadata[] = "gradserve-route";

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_RPC_H_
