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

namespace gradserve::server {

namespace pb = ::gradserve::v1;

absl::StatusOr<runtime::ComputeCall> ComputeCallFromProto(
    const pb::ComputeRequest& r, const Limits& limits);
void RunResultToProto(const RunResult& result, pb::ComputeResponse* out);

absl::StatusOr<runtime::DescribeCall> DescribeCallFromProto(
    const pb::DescribeRequest& r, const Limits& limits);
void SummaryToProto(const GraphSummary& summary, pb::DescribeResponse* out);

absl::StatusOr<runtime::ForwardCall> ForwardCallFromProto(
    const pb::ForwardRequest& r, const Limits& limits);
void ForwardReplyToProto(const runtime::ForwardReply& reply,
                         pb::ForwardResponse* out);

absl::StatusOr<runtime::BackwardCall> BackwardCallFromProto(
    const pb::BackwardRequest& r, const Limits& limits);

Mode ModeFromProto(pb::Mode mode);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_CALL_CODEC_H_
