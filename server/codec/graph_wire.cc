#include "server/codec/graph_wire.h"

#include <string>
#include <variant>
#include <vector>

#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

void AttributeToProto(const AttrValue& value, pb::Attribute* out) {
  if (const auto* i = std::get_if<int64_t>(&value)) {
    out->set_i(*i);
  } else if (const auto* f = std::get_if<double>(&value)) {
    out->set_f(*f);
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    out->set_s(*s);
  } else if (const auto* ints = std::get_if<std::vector<int64_t>>(&value)) {
    out->mutable_ints()->mutable_values()->Assign(ints->begin(), ints->end());
  } else {
    const auto& floats = std::get<std::vector<double>>(value);
    out->mutable_floats()->mutable_values()->Assign(floats.begin(),
                                                    floats.end());
  }
}

}  // namespace

void GraphToProto(const GraphDef& graph, pb::Graph* out) {
  out->mutable_inputs()->Assign(graph.inputs.begin(), graph.inputs.end());
  out->mutable_outputs()->Assign(graph.outputs.begin(), graph.outputs.end());
  TensorsToProto(graph.parameters, out->mutable_parameters());
  TensorsToProto(graph.buffers, out->mutable_buffers());
  for (const NodeDef& node : graph.nodes) {
    pb::Node* n = out->add_nodes();
    n->set_name(node.name);
    n->set_op(node.op);
    n->mutable_inputs()->Assign(node.inputs.begin(), node.inputs.end());
    n->mutable_outputs()->Assign(node.outputs.begin(), node.outputs.end());
    for (const auto& [name, value] : node.attributes) {
      AttributeToProto(value, &(*n->mutable_attributes())[name]);
    }
  }
}

}  // namespace gradserve::server
