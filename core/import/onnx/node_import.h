// The importer's working state: what is known about each ONNX value at
// import time, and the view one op-table row gets of the node it translates.
#ifndef GRADSERVE_CORE_IMPORT_ONNX_NODE_IMPORT_H_
#define GRADSERVE_CORE_IMPORT_ONNX_NODE_IMPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "onnx/onnx_pb.h"

namespace gradserve::onnx_import {

// One ONNX value as the importer sees it.
struct ValueInfo {
  // Known at import time: an initializer, a Constant, or folded.
  std::optional<Tensor> constant;
  bool initializer = false;
  // From the model's declarations and ONNX's shape inference; a dim of -1
  // is unknown (symbolic), no dims at all an unknown rank.
  std::optional<std::vector<int64_t>> dims;
  int32_t elem_type = 0;  // onnx::TensorProto::DataType; 0 = unknown
};

// A tensor of an initializer or a Constant: float32 and float64 stay so,
// integer and bool types become int64 (gradserve's integer type); other types,
// external data and sizes over the limits are errors naming `what`.
absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto,
                                       absl::string_view what,
                                       const Limits& limits);

// INVALID_ARGUMENT: `what` keeps its data outside the model.
absl::Status ExternalDataError(absl::string_view what);

// The state of one import: the graph being built and the values known.
struct GraphImport {
  explicit GraphImport(const Limits& l) : limits(l) {}

  // A name not yet used for a value (or node), derived from `base`.
  std::string UniqueValue(absl::string_view base);
  std::string UniqueNode(absl::string_view base);

  Limits limits;
  GraphDef graph;
  absl::flat_hash_map<std::string, ValueInfo> values;
  absl::flat_hash_set<std::string> read;     // read by a node or an output
  absl::flat_hash_set<std::string> buffers;  // to be buffers, not parameters
  absl::flat_hash_set<std::string> value_names;
  absl::flat_hash_set<std::string> node_names;
};

// One ONNX node while its row translates it. Errors name the node, its op
// and the opset.
class NodeImport {
 public:
  NodeImport(GraphImport& graph, const onnx::NodeProto& node, int opset,
             std::string name)
      : graph_(graph), node_(node), opset_(opset), name_(std::move(name)) {}

  const onnx::NodeProto& proto() const { return node_; }
  int opset() const { return opset_; }
  const std::string& name() const { return name_; }
  const Limits& limits() const { return graph_.limits; }

  // Attributes; the checker has matched their types with the op's schema.
  const onnx::AttributeProto* Attr(absl::string_view name) const;
  int64_t Int(absl::string_view name, int64_t fallback) const;
  double Float(absl::string_view name, double fallback) const;
  std::vector<int64_t> Ints(absl::string_view name,
                            std::vector<int64_t> fallback = {}) const;
  std::string String(absl::string_view name, std::string fallback) const;

  int NumInputs() const { return node_.input_size(); }
  bool HasInput(int i) const;
  const std::string& Input(int i) const { return node_.input(i); }
  bool IsConstant(int i) const;
  // Input i's value, which this row reads at import time (`what`: "the
  // shape"): UNIMPLEMENTED when it is only known at run time.
  absl::StatusOr<Tensor> ConstantInput(int i, absl::string_view what) const;
  // Input i's dims, all known (`why` says what needs them).
  absl::StatusOr<Shape> StaticShape(int i, absl::string_view why) const;
  std::optional<int> Rank(int i) const;
  int32_t ElemType(int i) const;

  int NumOutputs() const { return node_.output_size(); }
  const std::string& Output(int j) const { return node_.output(j); }
  // Named, and read by another node or a graph output.
  bool OutputUsed(int j) const;
  // Output j's dims as the model declares or ONNX's shape inference infers
  // them (-1 = unknown), if known.
  std::optional<std::vector<int64_t>> OutputDims(int j) const;
  // UNIMPLEMENTED when an output from `first` on is used (`what` names them).
  absl::Status RejectUsedOutputs(int first, absl::string_view what) const;

  // Adds a gradserve node named after this one (plus "/suffix" when one ONNX
  // node becomes several).
  void Emit(std::string op, std::vector<std::string> inputs,
            std::vector<std::string> outputs, AttrMap attrs = {},
            absl::string_view suffix = "");
  // A fresh value name for an intermediate result.
  std::string Temp(absl::string_view suffix);
  // A new value known at import time (a buffer when a node reads it).
  std::string NewConstant(absl::string_view suffix, Tensor value);
  // Output j is known at import time (folded).
  void SetConstant(int j, Tensor value);
  // Input i is non-trainable state (BatchNorm statistics).
  void MarkBuffer(int i) { graph_.buffers.insert(Input(i)); }

  template <typename... Args>
  absl::Status Unsupported(const Args&... parts) const {
    return absl::UnimplementedError(absl::StrCat(Label(), parts...));
  }
  template <typename... Args>
  absl::Status Invalid(const Args&... parts) const {
    return absl::InvalidArgumentError(absl::StrCat(Label(), parts...));
  }

 private:
  // "ONNX node 'conv1' (Conv, opset 14): "
  std::string Label() const;
  const ValueInfo* Info(int i) const;

  GraphImport& graph_;
  const onnx::NodeProto& node_;
  int opset_;
  std::string name_;
  int emitted_ = 0;
};

// One row of the op table per ONNX op. A row without a handler maps one to
// one: the inputs and the first output pass through, and each listed float
// attribute is renamed (with ONNX's default when the node leaves it out).
struct FloatAttrMapping {
  const char* onnx_name;
  const char* gradserve_name;
  double onnx_default;
};
using Handler = absl::Status (*)(NodeImport& node, const char* gradserve_op);
struct OpRow {
  const char* onnx_op;
  const char* gradserve_op;  // what it becomes ("" = folded at import)
  Handler handler;
  std::vector<FloatAttrMapping> float_attrs;
};

// The row for an ai.onnx op, or null.
const OpRow* FindOpRow(absl::string_view onnx_op);
absl::Status ImportNode(const OpRow& row, NodeImport& node);

}  // namespace gradserve::onnx_import

#endif  // GRADSERVE_CORE_IMPORT_ONNX_NODE_IMPORT_H_
