// Session requests and replies between the wire and the runtime's calls.
#ifndef GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_
#define GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_

#include "absl/status/statusor.h"
#include "core/graph.h"
#include "core/train/optimizer.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "runtime/calls.h"
#include "server/codec/wire_message.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

// torch 1.13's defaults for unset Adam fields; SGD's lr is required.
absl::StatusOr<OptimizerConfig> OptimizerFromProto(const pb::Optimizer& o);
void OptimizerToProto(const OptimizerConfig& config, pb::Optimizer* out);

absl::StatusOr<runtime::CreateSessionCall> CreateSessionCallFromProto(
    pb::CreateSessionRequest& r, const Limits& limits);
void SessionInfoToProto(const runtime::SessionInfo& info, pb::SessionInfo* out);

runtime::GetParametersCall GetParametersCallFromProto(
    const pb::GetParametersRequest& r);
void SessionValuesToWire(const runtime::SessionValues& values,
                         pb::GetParametersResponse* rest, WireMessage* out);

absl::StatusOr<runtime::SetParametersCall> SetParametersCallFromProto(
    pb::SetParametersRequest& r, const Limits& limits);

absl::StatusOr<runtime::TrainStepCall> TrainStepCallFromProto(
    pb::TrainStepRequest& r, const Limits& limits);
void TrainStepReplyToWire(const runtime::TrainStepReply& reply,
                          pb::TrainStepResponse* rest, WireMessage* out);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_
