// The graph index: a graph's structure validated, its nodes sorted and
// their attributes checked, every value name resolved to an id. Built once
// per graph structure (a session's graph, or a stateless request's graph on a
// program-cache miss) and shared by every program compiled from it. It holds
// no parameter values, only the dtypes and shapes the graph declares.
#ifndef GRADSERVE_CORE_COMPILE_GRAPH_INDEX_H_
#define GRADSERVE_CORE_COMPILE_GRAPH_INDEX_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/attributes.h"
#include "core/graph.h"
#include "core/op.h"

namespace gradserve {

enum class ValueKind { kInput, kParameter, kBuffer, kNodeOutput };

struct IndexedValue {
  std::string name;
  ValueKind kind;
  // Parameters and buffers: the dtype and shape the graph declares.
  TensorMeta declared;
  int producer = -1;  // node position (in sorted order) for node outputs
};

struct IndexedNode {
  NodeDef def;
  const OpSchema* schema = nullptr;
  Attributes attrs;  // checked against the schema, defaults filled in
  // One entry per input position (at least the schema's): the value id, or
  // -1 for an optional input left out; and the schema's name for it.
  std::vector<int> inputs;
  std::vector<std::string> input_names;
  std::vector<int> outputs;
};

class GraphIndex {
 public:
  static absl::StatusOr<std::shared_ptr<const GraphIndex>> Build(
      const GraphDef& graph, const Limits& limits);

  // Nodes in execution order (a stable topological sort of the graph's).
  const std::vector<IndexedNode>& nodes() const { return nodes_; }
  const std::vector<IndexedValue>& values() const { return values_; }
  int ValueId(absl::string_view name) const;  // -1 when unknown
  // ValueId, or INVALID_ARGUMENT "<what> names 'x', which ... defines".
  absl::StatusOr<int> LookUp(absl::string_view name,
                             absl::string_view what) const;
  const std::vector<int>& graph_outputs() const { return outputs_; }
  // StructureKey() of the graph this index was built from.
  const std::string& key() const { return key_; }

 private:
  absl::Status Define(const std::string& name, ValueKind kind,
                      absl::string_view where);
  absl::Status IndexNode(const NodeDef& def, size_t position);
  absl::Status ResolveInputs(IndexedNode& node) const;
  absl::Status Sort();

  std::vector<IndexedValue> values_;
  absl::flat_hash_map<std::string, int> value_ids_;
  std::vector<IndexedNode> nodes_;
  std::vector<int> outputs_;
  std::string key_;
};

// Canonical bytes of everything about a graph that compiling depends on: its
// nodes (in order) with their attributes, inputs, outputs, and the names,
// dtypes and shapes of its parameters and buffers; never their values. Equal
// keys mean the same index.
std::string StructureKey(const GraphDef& graph);

// RESOURCE_EXHAUSTED naming the node when it has more inputs than
// limits.max_node_inputs.
absl::Status CheckNodeInputs(absl::string_view node, absl::string_view op,
                             size_t inputs, const Limits& limits);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_COMPILE_GRAPH_INDEX_H_
