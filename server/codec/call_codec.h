// Compute, Describe, Forward and Backward requests and replies between the
// wire and the runtime's calls. Every tensor of a request is checked, and
// their total bounded, before any is converted.
#ifndef GRADSERVE_SERVER_CODEC_CALL_CODEC_H_
#define GRADSERVE_SERVER_CODEC_CALL_CODEC_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "core/compute.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "runtime/calls.h"
#include "server/codec/wire_message.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

absl::StatusOr<runtime::ComputeCall> ComputeCallFromProto(pb::ComputeRequest& r,
                                                          const Limits& limits);
// A ComputeResponse's fields.
void ComputeReplyToWire(const runtime::ComputeReply& reply, WireMessage* out);

absl::StatusOr<runtime::DescribeCall> DescribeCallFromProto(
    pb::DescribeRequest& r, const Limits& limits);
void SummaryToProto(const GraphSummary& summary, pb::DescribeResponse* out);

absl::StatusOr<runtime::ForwardCall> ForwardCallFromProto(pb::ForwardRequest& r,
                                                          const Limits& limits);
// A ForwardResponse: the id and expiry in `rest`, the tensors in `out`.
void ForwardReplyToWire(const runtime::ForwardReply& reply,
                        pb::ForwardResponse* rest, WireMessage* out);

absl::StatusOr<runtime::BackwardCall> BackwardCallFromProto(
    pb::BackwardRequest& r, const Limits& limits);

Mode ModeFromProto(pb::Mode mode);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_CALL_CODEC_H_
