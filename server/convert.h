// Conversions between the wire messages (gradserve.v1) and core types.
// Every tensor is validated before its storage is allocated.
#ifndef GRADSERVE_SERVER_CONVERT_H_
#define GRADSERVE_SERVER_CONVERT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/compute.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "grpcpp/support/status.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

// Checks a tensor's dtype, shape, element count and value fields; returns
// the bytes it takes once converted (bfloat16 is widened to float32). `what`
// names the tensor in messages, e.g. "feeds['x']".
absl::StatusOr<int64_t> CheckTensor(const pb::Tensor& t, absl::string_view what,
                                    const Limits& limits);

// A checked tensor's values in core storage.
absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t,
                                       absl::string_view what,
                                       const Limits& limits);
void TensorToProto(const Tensor& t, pb::Tensor* out);

absl::StatusOr<GraphDef> GraphFromProto(const pb::Graph& g,
                                        const Limits& limits);

// Validates every tensor of the request and their total size, then converts.
// The model must be a graph (ONNX and sessions answer UNIMPLEMENTED).
absl::StatusOr<ComputeArgs> ComputeArgsFromProto(const pb::ComputeRequest& r,
                                                 const Limits& limits,
                                                 GraphDef* graph);
void RunResultToProto(const RunResult& result, pb::ComputeResponse* out);

absl::StatusOr<absl::flat_hash_map<std::string, TensorMeta>>
InputMetasFromProto(const pb::DescribeRequest& r);
void SummaryToProto(const GraphSummary& summary, pb::DescribeResponse* out);

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CONVERT_H_
