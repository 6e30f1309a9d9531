// Graphs and a request's `model` oneof between the wire and core.
#ifndef GRADSERVE_SERVER_CODEC_GRAPH_CODEC_H_
#define GRADSERVE_SERVER_CODEC_GRAPH_CODEC_H_

#include "absl/status/statusor.h"
#include "core/graph.h"
#include "gradserve/v1/graph.pb.h"
#include "runtime/calls.h"
#include "server/codec/graph_wire.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {

// The graph's parameters and buffers are converted too, taking their data
// bytes from the message; check them first with a TensorBatch
// (ModelFromProto does).
absl::StatusOr<GraphDef> GraphFromProto(pb::Graph& g, const Limits& limits);

// A request's model oneof: its graph's tensors are checked into `batch`
// (the caller checks the batch's total before converting anything else).
template <typename Request>
absl::StatusOr<runtime::ModelSource> ModelFromProto(Request& r,
                                                    TensorBatch& batch,
                                                    const Limits& limits);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_GRAPH_CODEC_H_
