// Decode, check (ONNX's checker), convert old opsets (ONNX's version
// converter), infer shapes (ONNX's shape inference), then translate node by
// node through the op table. libonnx reports errors by exceptions; they
// become statuses here and go no further.
#include "core/import/onnx/onnx_import.h"

#include <exception>
#include <limits>
#include <utility>

#include "core/import/onnx/fusion.h"
#include "core/import/onnx/node_import.h"
#include "core/status_macros.h"
#include "onnx/checker.h"
#include "onnx/defs/schema.h"
#include "onnx/shape_inference/implementation.h"
#include "onnx/version_converter/convert.h"

namespace gradserve::onnx_import {
namespace {

absl::Status Rejected(absl::string_view stage, const std::exception& e) {
  return absl::InvalidArgumentError(
      absl::StrCat("onnx_model: ", stage, ": ", e.what()));
}

bool IsDefaultDomain(const std::string& domain) {
  return domain.empty() || domain == "ai.onnx";
}

// 0 when the model imports none (then only its nodes of other domains,
// which the import refuses, need an opset).
int DefaultOpset(const onnx::ModelProto& model) {
  for (const auto& opset : model.opset_import()) {
    if (IsDefaultDomain(opset.domain())) {
      return static_cast<int>(opset.version());
    }
  }
  return 0;
}

absl::StatusOr<onnx::ModelProto> Parse(absl::string_view bytes) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("onnx_model: the ", bytes.size(),
                     " bytes are not a serialized ONNX ModelProto"));
  }
  return model;
}

// Before the checker, which would look for the files on this machine.
absl::Status RejectExternalData(const onnx::GraphProto& graph) {
  for (const auto& init : graph.initializer()) {
    if (init.data_location() == onnx::TensorProto::EXTERNAL) {
      return ExternalDataError(absl::StrCat("initializer '", init.name(), "'"));
    }
  }
  for (const auto& node : graph.node()) {
    for (const auto& a : node.attribute()) {
      bool external = a.t().data_location() == onnx::TensorProto::EXTERNAL;
      for (const auto& t : a.tensors()) {
        external = external || t.data_location() == onnx::TensorProto::EXTERNAL;
      }
      if (external) {
        return ExternalDataError(absl::StrCat("attribute '", a.name(),
                                              "' of node '", node.name(), "'"));
      }
      if (a.has_g()) RETURN_IF_ERROR(RejectExternalData(a.g()));
      for (const auto& g : a.graphs()) RETURN_IF_ERROR(RejectExternalData(g));
    }
  }
  return absl::OkStatus();
}

// The fed dims of graph inputs whose declared dims are unknown (symbolic
// or absent), where the ranks agree.
void FillInputDims(onnx::GraphProto& graph, const InputShapes& shapes) {
  for (auto& input : *graph.mutable_input()) {
    auto fed = shapes.find(input.name());
    if (fed == shapes.end() || !input.type().has_tensor_type()) continue;
    auto* tensor = input.mutable_type()->mutable_tensor_type();
    const Shape& dims = fed->second;
    if (!tensor->has_shape()) {
      for (size_t d = 0; d < dims.size(); ++d)
        tensor->mutable_shape()->add_dim();
    }
    auto* shape = tensor->mutable_shape();
    if (shape->dim_size() != static_cast<int>(dims.size())) continue;
    for (int d = 0; d < shape->dim_size(); ++d) {
      if (!shape->dim(d).has_dim_value())
        shape->mutable_dim(d)->set_dim_value(dims[d]);
    }
  }
}

// The checker, then the converter for opsets below kMinOpset, then the fed
// dims, then shape inference (which fills value_info).
absl::StatusOr<int> CheckAndPrepare(onnx::ModelProto& model,
                                    const InputShapes& input_shapes) {
  RETURN_IF_ERROR(RejectExternalData(model.graph()));
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    return Rejected("ONNX's checker rejects the model", e);
  }
  int opset = DefaultOpset(model);
  if (opset > kMaxOpset) {
    return absl::UnimplementedError(absl::StrCat("onnx_model: opset ", opset,
                                                 " is newer than gradserve's "
                                                 "op table (opsets ",
                                                 kMinOpset, " to ", kMaxOpset,
                                                 ")"));
  }
  if (opset > 0 && opset < kMinOpset) {
    try {
      model = onnx::version_conversion::ConvertVersion(model, kMinOpset);
    } catch (const std::exception& e) {
      return absl::UnimplementedError(absl::StrCat(
          "onnx_model: opset ", opset, " could not be converted to opset ",
          kMinOpset, " by ONNX's version converter: ", e.what()));
    }
    opset = kMinOpset;
  }
  FillInputDims(*model.mutable_graph(), input_shapes);
  try {
    onnx::ShapeInferenceOptions options;
    options.check_type = true;
    onnx::shape_inference::InferShapes(
        model, onnx::OpSchemaRegistry::Instance(), options);
  } catch (const std::exception& e) {
    return Rejected("ONNX's shape inference rejects the model", e);
  }
  return opset;
}

void Declare(GraphImport& g, const onnx::ValueInfoProto& v) {
  ValueInfo& info = g.values[v.name()];
  if (!v.type().has_tensor_type()) return;
  const auto& tensor = v.type().tensor_type();
  info.elem_type = tensor.elem_type();
  if (!tensor.has_shape()) return;
  std::vector<int64_t> dims;
  for (const auto& d : tensor.shape().dim()) {
    dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
  }
  info.dims = std::move(dims);
}

absl::Status DeclareValues(GraphImport& g, const onnx::GraphProto& graph) {
  for (const auto& v : graph.input()) Declare(g, v);
  for (const auto& v : graph.value_info()) Declare(g, v);
  for (const auto& v : graph.output()) Declare(g, v);
  for (const auto& init : graph.initializer()) {
    ValueInfo& info = g.values[init.name()];
    ASSIGN_OR_RETURN(
        info.constant,
        TensorFromProto(init, absl::StrCat("initializer '", init.name(), "'"),
                        g.limits));
    info.initializer = true;
    info.dims = info.constant->shape();
    info.elem_type = init.data_type();
  }
  for (const auto& [name, info] : g.values) g.value_names.insert(name);
  for (const auto& node : graph.node()) {
    for (const auto& in : node.input()) {
      if (!in.empty()) g.read.insert(in);
    }
    for (const auto& out : node.output()) g.value_names.insert(out);
  }
  for (const auto& out : graph.output()) g.read.insert(out.name());
  return absl::OkStatus();
}

absl::Status DeclareInputs(GraphImport& g, const onnx::GraphProto& graph) {
  for (const auto& v : graph.input()) {
    const ValueInfo& info = g.values[v.name()];
    if (info.initializer) continue;  // a parameter a feed may override
    if (info.elem_type != onnx::TensorProto::FLOAT &&
        info.elem_type != onnx::TensorProto::DOUBLE &&
        info.elem_type != onnx::TensorProto::INT64) {
      return absl::UnimplementedError(absl::StrCat(
          "onnx_model: graph input '", v.name(), "' has element type ",
          onnx::TensorProto::DataType_Name(info.elem_type),
          "; gradserve feeds float32, float64 and int64"));
    }
    g.graph.inputs.push_back(v.name());
  }
  return absl::OkStatus();
}

absl::Status ImportNodes(GraphImport& g, const onnx::GraphProto& graph,
                         int opset) {
  const absl::flat_hash_map<int, Fused> fusions = FindFusions(graph);
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto& node = graph.node(i);
    auto fused = fusions.find(i);
    if (fused != fusions.end()) {
      if (fused->second.op.empty()) continue;
      NodeDef def;
      def.name = g.UniqueNode(node.name().empty()
                                  ? absl::StrCat(fused->second.op, "_", i)
                                  : node.name());
      def.op = fused->second.op;
      def.inputs = {fused->second.input};
      def.outputs = {node.output(0)};
      g.graph.nodes.push_back(std::move(def));
      continue;
    }
    const std::string name =
        g.UniqueNode(node.name().empty() ? absl::StrCat(node.op_type(), "_", i)
                                         : node.name());
    if (!IsDefaultDomain(node.domain())) {
      return absl::UnimplementedError(absl::StrCat(
          "ONNX node '", name, "' (", node.op_type(), "): domain '",
          node.domain(), "' is not supported (gradserve imports ai.onnx ops)"));
    }
    NodeImport n(g, node, opset, name);
    const OpRow* row = FindOpRow(node.op_type());
    if (row == nullptr) {
      return n.Unsupported("gradserve has no mapping for op '", node.op_type(),
                           "' yet");
    }
    RETURN_IF_ERROR(ImportNode(*row, n));
  }
  return absl::OkStatus();
}

// Values the emitted nodes and the outputs read that are known at import
// time: float initializers are parameters, the rest buffers.
void AddStoredValues(GraphImport& g) {
  absl::flat_hash_set<std::string> needed(g.graph.outputs.begin(),
                                          g.graph.outputs.end());
  for (const NodeDef& node : g.graph.nodes) {
    needed.insert(node.inputs.begin(), node.inputs.end());
  }
  for (const std::string& name : needed) {
    auto it = g.values.find(name);
    if (it == g.values.end() || !it->second.constant) continue;
    const ValueInfo& info = it->second;
    const bool parameter = info.initializer && !g.buffers.contains(name) &&
                           info.constant->dtype() != DType::kInt64;
    (parameter ? g.graph.parameters : g.graph.buffers)[name] = *info.constant;
  }
}

}  // namespace

absl::StatusOr<GraphDef> ImportModel(absl::string_view bytes,
                                     const Limits& limits,
                                     const InputShapes& input_shapes) {
  ASSIGN_OR_RETURN(onnx::ModelProto model, Parse(bytes));
  ASSIGN_OR_RETURN(const int opset, CheckAndPrepare(model, input_shapes));
  const onnx::GraphProto& graph = model.graph();
  GraphImport g(limits);
  RETURN_IF_ERROR(DeclareValues(g, graph));
  RETURN_IF_ERROR(DeclareInputs(g, graph));
  RETURN_IF_ERROR(ImportNodes(g, graph, opset));
  for (const auto& out : graph.output()) g.graph.outputs.push_back(out.name());
  AddStoredValues(g);
  return std::move(g.graph);
}

}  // namespace gradserve::onnx_import
