#include "server/rpc.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "server/codec/wire_check.h"

namespace gradserve::server {

using google::protobuf::internal::WireFormatLite;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<runtime::CallContext> CallContextOf(
    grpc::CallbackServerContext* context, const TokenTable* tokens) {
  runtime::CallContext ctx;
  ctx.connection = context->peer();
  const auto& metadata = context->client_metadata();
  if (tokens != nullptr) {
    std::optional<absl::string_view> authorization;
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      authorization = absl::string_view(it->second.data(), it->second.size());
    }
    ASSIGN_OR_RETURN(ctx.tenant, tokens->Authenticate(authorization));
  }
  if (auto it = metadata.find(kRouteMetadata); it != metadata.end()) {
    ctx.route.assign(it->second.data(), it->second.size());
  }
  const auto deadline = context->deadline();
  ctx.check_cancelled = [context, deadline]() {
    if (std::chrono::system_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          "the call's deadline passed while computing");
    }
    if (context->IsCancelled()) {
      return absl::CancelledError("the call was cancelled");
    }
    return absl::OkStatus();
  };
  return ctx;
}

bool IsSameHostPeer(absl::string_view peer) {
  return absl::StartsWith(peer, "unix:") ||
         absl::StartsWith(peer, "unix-abstract:") ||
         absl::StartsWith(peer, "ipv4:127.") ||
         absl::StartsWith(peer, "ipv6:[::1]:") ||
         absl::StartsWith(peer, "ipv6:[::ffff:127.");
}

absl::Status ParseMessage(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message) {
  grpc::ByteBuffer copy(bytes);  // shares the slices
  grpc::ProtoBufferReader reader(&copy);
  google::protobuf::io::CodedInputStream input(&reader);
  input.SetTotalBytesLimit(std::numeric_limits<int>::max());
  if (message->ParseFromCodedStream(&input) && input.ConsumedEntireMessage()) {
    return absl::OkStatus();
  }
  return NotParsed(message->GetTypeName(), bytes.Length());
}

absl::Status SerializeMessage(const google::protobuf::Message& message,
                              grpc::ByteBuffer* out) {
  bool own_buffer = false;
  grpc::Status status =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(
          message, out, &own_buffer);
  if (status.ok()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cannot serialize the reply: ", status.error_message()));
}

std::string PeekStringField(const grpc::ByteBuffer& bytes, int field_number) {
  grpc::ByteBuffer copy(bytes);
  grpc::ProtoBufferReader reader(&copy);
  google::protobuf::io::CodedInputStream input(&reader);
  input.SetTotalBytesLimit(std::numeric_limits<int>::max());
  std::string value;
  for (uint32_t tag = input.ReadTag(); tag != 0; tag = input.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == field_number &&
        WireFormatLite::GetTagWireType(tag) ==
            WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (!WireFormatLite::ReadString(&input, &value)) return "";
      continue;  // the last occurrence wins, as in parsing
    }
    if (!WireFormatLite::SkipField(&input, tag)) return "";
  }
  return value;
}

}  // namespace gradserve::server
