#include "server/codec/graph_codec.h"

#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compile/graph_index.h"
#include "core/status_macros.h"
#include "gradserve/v1/gradient_service.pb.h"

namespace gradserve::server {
namespace {

absl::StatusOr<AttrValue> AttributeFromProto(const pb::Attribute& a,
                                             absl::string_view node,
                                             absl::string_view name) {
  switch (a.value_case()) {
    case pb::Attribute::kI:
      return AttrValue(a.i());
    case pb::Attribute::kF:
      return AttrValue(a.f());
    case pb::Attribute::kS:
      return AttrValue(a.s());
    case pb::Attribute::kInts:
      return AttrValue(std::vector<int64_t>(a.ints().values().begin(),
                                            a.ints().values().end()));
    case pb::Attribute::kFloats:
      return AttrValue(std::vector<double>(a.floats().values().begin(),
                                           a.floats().values().end()));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("node '", node, "': attribute '", name,
                       "' has no value (set one of i, f, s, ints, floats)"));
  }
}

template <typename R, typename = void>
struct HasSessionId : std::false_type {};
template <typename R>
struct HasSessionId<R, std::void_t<decltype(std::declval<R>().session_id())>>
    : std::true_type {};

}  // namespace

absl::StatusOr<GraphDef> GraphFromProto(pb::Graph& g, const Limits& limits) {
  if (g.nodes_size() > limits.max_graph_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", g.nodes_size(), " nodes, over the limit of ",
                     limits.max_graph_nodes));
  }
  GraphDef graph;
  graph.inputs.assign(g.inputs().begin(), g.inputs().end());
  graph.outputs.assign(g.outputs().begin(), g.outputs().end());
  using Ordered = std::map<std::string, Tensor>;
  ASSIGN_OR_RETURN(graph.parameters,
                   TakeTensorsFromProto<Ordered>(g.mutable_parameters(),
                                                 "graph.parameters", limits));
  ASSIGN_OR_RETURN(graph.buffers,
                   TakeTensorsFromProto<Ordered>(g.mutable_buffers(),
                                                 "graph.buffers", limits));
  graph.nodes.reserve(g.nodes_size());
  for (const pb::Node& n : g.nodes()) {
    RETURN_IF_ERROR(
        CheckNodeInputs(n.name(), n.op(), n.inputs().size(), limits));
    NodeDef node;
    node.name = n.name();
    node.op = n.op();
    node.inputs.assign(n.inputs().begin(), n.inputs().end());
    node.outputs.assign(n.outputs().begin(), n.outputs().end());
    for (const auto& [name, a] : n.attributes()) {
      ASSIGN_OR_RETURN(node.attributes[name],
                       AttributeFromProto(a, n.name(), name));
    }
    graph.nodes.push_back(std::move(node));
  }
  return graph;
}

template <typename Request>
absl::StatusOr<runtime::ModelSource> ModelFromProto(Request& r,
                                                    TensorBatch& batch,
                                                    const Limits& limits) {
  runtime::ModelSource model;
  if (r.model_case() == Request::kGraph) {
    model.kind = runtime::ModelSource::Kind::kGraph;
    RETURN_IF_ERROR(batch.Check(r.graph().parameters(), "graph.parameters"));
    RETURN_IF_ERROR(batch.Check(r.graph().buffers(), "graph.buffers"));
    RETURN_IF_ERROR(batch.CheckTotal());
    ASSIGN_OR_RETURN(model.graph, GraphFromProto(*r.mutable_graph(), limits));
    return model;
  }
  if (r.model_case() == Request::kOnnxModel) {
    model.kind = runtime::ModelSource::Kind::kOnnx;
    model.onnx_model = r.onnx_model();
    return model;
  }
  if constexpr (HasSessionId<Request>::value) {
    if (r.model_case() == Request::kSessionId) {
      model.kind = runtime::ModelSource::Kind::kSession;
      model.session_id = r.session_id();
      return model;
    }
    return absl::InvalidArgumentError(
        "the request carries no model: set graph, onnx_model or session_id");
  }
  return absl::InvalidArgumentError(
      "the request carries no model: set graph or onnx_model");
}

template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::ComputeRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::DescribeRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::ForwardRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::CreateSessionRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::CheckGradientsRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::HessianVectorProductRequest&, TensorBatch&, const Limits&);
template absl::StatusOr<runtime::ModelSource> ModelFromProto(
    pb::HessianEigenvaluesRequest&, TensorBatch&, const Limits&);

}  // namespace gradserve::server
