// Session requests and replies between the wire and the runtime's calls.
#ifndef GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_
#define GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_

#include "absl/status/statusor.h"
#include "core/graph.h"
#include "core/train/optimizer.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "runtime/calls.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

// torch 1.13's defaults for unset Adam fields; SGD's lr is required.
absl::StatusOr<OptimizerConfig> OptimizerFromProto(const pb::Optimizer& o);
void OptimizerToProto(const OptimizerConfig& config, pb::Optimizer* out);

absl::StatusOr<runtime::CreateSessionCall> CreateSessionCallFromProto(
    const pb::CreateSessionRequest& r, const Limits& limits);
void SessionInfoToProto(const runtime::SessionInfo& info, pb::SessionInfo* out);

runtime::GetParametersCall GetParametersCallFromProto(
    const pb::GetParametersRequest& r);
void SessionValuesToProto(const runtime::SessionValues& values,
                          pb::GetParametersResponse* out);

absl::StatusOr<runtime::SetParametersCall> SetParametersCallFromProto(
    const pb::SetParametersRequest& r, const Limits& limits);

absl::StatusOr<runtime::TrainStepCall> TrainStepCallFromProto(
    const pb::TrainStepRequest& r, const Limits& limits);
void TrainStepReplyToProto(const runtime::TrainStepReply& reply,
                           pb::TrainStepResponse* out);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_SESSION_CODEC_H_
