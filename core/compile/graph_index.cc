#include "core/compile/graph_index.h"

#include <algorithm>
#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/compile/key_writer.h"
#include "core/op_registry.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

absl::string_view KindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kInput:
      return "a graph input";
    case ValueKind::kParameter:
      return "a parameter";
    case ValueKind::kBuffer:
      return "a buffer";
    case ValueKind::kNodeOutput:
      return "a node output";
  }
  return "";
}

std::string NodeLabel(const NodeDef& node) {
  return absl::StrCat("node '", node.name, "' (", node.op, ")");
}

// "[x, weight, bias (optional)]", for messages about input counts.
std::string InputList(const OpSchema& schema) {
  std::vector<std::string> names;
  for (const InputSpec& in : schema.inputs) {
    names.push_back(absl::StrCat(in.name, in.optional ? " (optional)" : "",
                                 in.variadic ? "..." : ""));
  }
  return absl::StrCat("[", absl::StrJoin(names, ", "), "]");
}

// The schema's name for input position i: variadic inputs are numbered
// ("x1", "x2", ...).
std::string InputName(const OpSchema& schema, size_t i) {
  const size_t last = schema.inputs.size() - 1;
  const InputSpec& spec = schema.inputs[std::min(i, last)];
  return spec.variadic ? absl::StrCat(spec.name, i + 1 - last) : spec.name;
}

absl::Status CheckArity(const NodeDef& node, const OpSchema& schema) {
  const bool variadic = !schema.inputs.empty() && schema.inputs.back().variadic;
  if (!variadic && node.inputs.size() > schema.inputs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(NodeLabel(node), ": expected inputs ", InputList(schema),
                     ", got ", node.inputs.size(), " inputs"));
  }
  // Inputs are positional: a required input must be named at its own
  // position, whatever comes before it.
  const size_t positions = std::max(node.inputs.size(), schema.inputs.size());
  for (size_t i = 0; i < positions; ++i) {
    const InputSpec& spec =
        schema.inputs[std::min(i, schema.inputs.size() - 1)];
    const bool given = i < node.inputs.size() && !node.inputs[i].empty();
    if (given || spec.optional) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        NodeLabel(node), ": input '", InputName(schema, i), "' (position ", i,
        ") is required but ",
        i < node.inputs.size() ? "was left empty" : "was not given",
        "; inputs are positional ", InputList(schema),
        ", leave an optional one out with \"\""));
  }
  const int max_outputs = static_cast<int>(schema.outputs.size());
  const int num_outputs = static_cast<int>(node.outputs.size());
  if (num_outputs < schema.min_outputs ||
      (num_outputs > max_outputs && !schema.variadic_outputs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        NodeLabel(node), ": expected ",
        schema.variadic_outputs ? absl::StrCat(schema.min_outputs, " or more")
        : schema.min_outputs == max_outputs
            ? absl::StrCat(max_outputs)
            : absl::StrCat(schema.min_outputs, " to ", max_outputs),
        " outputs [", absl::StrJoin(schema.outputs, ", "), "], got ",
        num_outputs));
  }
  return absl::OkStatus();
}

void WriteAttribute(KeyWriter& w, const AttrValue& value) {
  w.Int(static_cast<int64_t>(value.index()));
  switch (TypeOf(value)) {
    case AttrType::kInt:
      w.Int(std::get<int64_t>(value));
      break;
    case AttrType::kFloat:
      w.Double(std::get<double>(value));
      break;
    case AttrType::kString:
      w.Str(std::get<std::string>(value));
      break;
    case AttrType::kInts:
      w.Ints(std::get<std::vector<int64_t>>(value));
      break;
    case AttrType::kFloats: {
      const auto& v = std::get<std::vector<double>>(value);
      w.Int(static_cast<int64_t>(v.size()));
      for (double x : v) w.Double(x);
      break;
    }
  }
}

void WriteNode(KeyWriter& w, const NodeDef& node) {
  w.Str(node.name).Str(node.op);
  w.Int(static_cast<int64_t>(node.inputs.size()));
  for (const std::string& in : node.inputs) w.Str(in);
  w.Int(static_cast<int64_t>(node.outputs.size()));
  for (const std::string& out : node.outputs) w.Str(out);
  std::vector<const std::string*> names;
  for (const auto& [name, value] : node.attributes) names.push_back(&name);
  std::sort(names.begin(), names.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  w.Int(static_cast<int64_t>(names.size()));
  for (const std::string* name : names) {
    w.Str(*name);
    WriteAttribute(w, node.attributes.at(*name));
  }
}

}  // namespace

std::string StructureKey(const GraphDef& graph) {
  KeyWriter w;
  w.Int(static_cast<int64_t>(graph.nodes.size()));
  for (const NodeDef& node : graph.nodes) WriteNode(w, node);
  w.Int(static_cast<int64_t>(graph.inputs.size()));
  for (const std::string& in : graph.inputs) w.Str(in);
  w.Int(static_cast<int64_t>(graph.outputs.size()));
  for (const std::string& out : graph.outputs) w.Str(out);
  for (const auto* state : {&graph.parameters, &graph.buffers}) {
    w.Int(static_cast<int64_t>(state->size()));
    for (const auto& [name, tensor] : *state) w.Str(name).Meta(tensor.meta());
  }
  return w.Take();
}

absl::Status CheckNodeInputs(absl::string_view node, absl::string_view op,
                             size_t inputs, const Limits& limits) {
  if (static_cast<int64_t>(inputs) <= limits.max_node_inputs) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("node '", node, "' (", op, ") has ", inputs,
                   " inputs, over the limit of ", limits.max_node_inputs));
}

absl::StatusOr<std::shared_ptr<const GraphIndex>> GraphIndex::Build(
    const GraphDef& graph, const Limits& limits) {
  if (static_cast<int64_t>(graph.nodes.size()) > limits.max_graph_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", graph.nodes.size(),
                     " nodes, over the limit of ", limits.max_graph_nodes));
  }
  auto index = std::shared_ptr<GraphIndex>(new GraphIndex());
  for (const std::string& name : graph.inputs) {
    RETURN_IF_ERROR(index->Define(name, ValueKind::kInput, "graph input"));
  }
  for (const auto& [name, tensor] : graph.parameters) {
    RETURN_IF_ERROR(index->Define(name, ValueKind::kParameter, "parameter"));
    index->values_.back().declared = tensor.meta();
    if (!IsFloating(tensor.dtype())) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", name,
                                                     "' must be float32, got ",
                                                     tensor.meta().ToString()));
    }
  }
  for (const auto& [name, tensor] : graph.buffers) {
    RETURN_IF_ERROR(index->Define(name, ValueKind::kBuffer, "buffer"));
    index->values_.back().declared = tensor.meta();
  }
  absl::flat_hash_set<absl::string_view> node_names;
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    const NodeDef& node = graph.nodes[n];
    if (node.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("node #", n, " (", node.op, ") has no name"));
    }
    if (!node_names.insert(node.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("node name '", node.name, "' is used twice"));
    }
    RETURN_IF_ERROR(
        CheckNodeInputs(node.name, node.op, node.inputs.size(), limits));
    RETURN_IF_ERROR(index->IndexNode(node, n));
  }
  for (IndexedNode& node : index->nodes_) {
    RETURN_IF_ERROR(index->ResolveInputs(node));
  }
  for (const std::string& out : graph.outputs) {
    ASSIGN_OR_RETURN(int id, index->LookUp(out, "graph.outputs"));
    index->outputs_.push_back(id);
  }
  RETURN_IF_ERROR(index->Sort());
  index->key_ = StructureKey(graph);
  return std::shared_ptr<const GraphIndex>(std::move(index));
}

int GraphIndex::ValueId(absl::string_view name) const {
  auto it = value_ids_.find(name);
  return it == value_ids_.end() ? -1 : it->second;
}

absl::StatusOr<int> GraphIndex::LookUp(absl::string_view name,
                                       absl::string_view what) const {
  const int id = ValueId(name);
  if (id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " names '", name,
                     "', which no graph input, parameter, buffer or node "
                     "output defines"));
  }
  return id;
}

absl::Status GraphIndex::Define(const std::string& name, ValueKind kind,
                                absl::string_view where) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": value names must not be empty"));
  }
  auto [it, inserted] =
      value_ids_.emplace(name, static_cast<int>(values_.size()));
  if (!inserted) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": value '", name, "' is defined twice (it is already ",
        KindName(values_[it->second].kind), ")"));
  }
  values_.push_back(IndexedValue{name, kind, {}, -1});
  return absl::OkStatus();
}

absl::Status GraphIndex::IndexNode(const NodeDef& def, size_t position) {
  const OpSchema* schema = OpRegistry::Global().Find(def.op);
  if (schema == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("node '", def.name, "': unknown op '", def.op,
                     "' (GetServerInfo lists the supported ops)"));
  }
  RETURN_IF_ERROR(CheckArity(def, *schema));
  IndexedNode node;
  node.def = def;
  node.schema = schema;
  ASSIGN_OR_RETURN(
      node.attrs,
      Attributes::Create(def.name, def.op, def.attributes, schema->attrs));
  for (const std::string& out : def.outputs) {
    RETURN_IF_ERROR(Define(out, ValueKind::kNodeOutput,
                           absl::StrCat("node '", def.name, "'")));
    values_.back().producer = static_cast<int>(position);  // fixed by Sort()
    node.outputs.push_back(static_cast<int>(values_.size()) - 1);
  }
  nodes_.push_back(std::move(node));
  return absl::OkStatus();
}

absl::Status GraphIndex::ResolveInputs(IndexedNode& node) const {
  const NodeDef& def = node.def;
  const size_t positions =
      std::max(def.inputs.size(), node.schema->inputs.size());
  for (size_t i = 0; i < positions; ++i) {
    node.input_names.push_back(InputName(*node.schema, i));
    if (i >= def.inputs.size() || def.inputs[i].empty()) {
      node.inputs.push_back(-1);
      continue;
    }
    const int id = ValueId(def.inputs[i]);
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(def), ": input '", node.input_names.back(), "' refers to '",
          def.inputs[i],
          "', which no graph input, parameter, buffer or node output "
          "defines"));
    }
    node.inputs.push_back(id);
  }
  return absl::OkStatus();
}

// Kahn's algorithm over producer -> consumer edges, stable in graph order;
// producers are renumbered to positions in the sorted order.
absl::Status GraphIndex::Sort() {
  const int num_nodes = static_cast<int>(nodes_.size());
  std::vector<int> pending(num_nodes, 0);
  std::vector<std::vector<int>> consumers(num_nodes);
  for (int n = 0; n < num_nodes; ++n) {
    for (int in : nodes_[n].inputs) {
      const int producer = in >= 0 ? values_[in].producer : -1;
      if (producer < 0) continue;
      consumers[producer].push_back(n);
      ++pending[n];
    }
  }
  std::deque<int> ready;
  for (int n = 0; n < num_nodes; ++n) {
    if (pending[n] == 0) ready.push_back(n);
  }
  std::vector<int> order;
  order.reserve(num_nodes);
  while (!ready.empty()) {
    const int n = ready.front();
    ready.pop_front();
    order.push_back(n);
    for (int c : consumers[n]) {
      if (--pending[c] == 0) ready.push_back(c);
    }
  }
  if (static_cast<int>(order.size()) != num_nodes) {
    std::vector<std::string> cyclic;
    for (int n = 0; n < num_nodes && cyclic.size() < 8; ++n) {
      if (pending[n] > 0) {
        cyclic.push_back(absl::StrCat("'", nodes_[n].def.name, "'"));
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "graph has a cycle through nodes ", absl::StrJoin(cyclic, ", ")));
  }
  std::vector<int> position(num_nodes);
  std::vector<IndexedNode> sorted;
  sorted.reserve(num_nodes);
  for (int n : order) {
    position[n] = static_cast<int>(sorted.size());
    sorted.push_back(std::move(nodes_[n]));
  }
  nodes_ = std::move(sorted);
  for (IndexedValue& v : values_) {
    if (v.producer >= 0) v.producer = position[v.producer];
  }
  return absl::OkStatus();
}

}  // namespace gradserve
