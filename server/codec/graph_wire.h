// A core graph as the wire has it (gradserve.v1.Graph): the half of the
// graph codec that needs core's tensors and graphs only, which gradctl
// import links too.
#ifndef GRADSERVE_SERVER_CODEC_GRAPH_WIRE_H_
#define GRADSERVE_SERVER_CODEC_GRAPH_WIRE_H_

#include "core/graph.h"
#include "gradserve/v1/graph.pb.h"

namespace gradserve::server {

// The graph as the wire has it, parameter and buffer values included.
void GraphToProto(const GraphDef& graph, ::gradserve::v1::Graph* out);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_GRAPH_WIRE_H_
