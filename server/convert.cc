#include "server/convert.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace gradserve::server {
namespace {

int64_t WireSize(pb::DataType dtype) {
  switch (dtype) {
    case pb::DATA_TYPE_FLOAT32:
      return 4;
    case pb::DATA_TYPE_INT64:
      return 8;
    case pb::DATA_TYPE_BFLOAT16:
      return 2;
    default:
      return 0;
  }
}

DType CoreType(pb::DataType dtype) {
  return dtype == pb::DATA_TYPE_INT64 ? DType::kInt64 : DType::kFloat32;
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

std::string Keyed(absl::string_view field, absl::string_view key) {
  return absl::StrCat(field, "['", key, "']");
}

// Only graphs are served; the other members of the model oneof are part of
// the contract for later versions.
template <typename Request>
absl::Status CheckModelIsGraph(const Request& r) {
  switch (r.model_case()) {
    case Request::kGraph:
      return absl::OkStatus();
    case Request::kOnnxModel:
      return absl::UnimplementedError(
          "onnx_model: ONNX import is not supported by this server yet; send "
          "a graph");
    case Request::kSessionId:
      return absl::UnimplementedError(
          "session_id: sessions are not supported by this server yet; send a "
          "graph");
    default:
      return absl::InvalidArgumentError(
          "the request carries no model: set graph");
  }
}

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

}  // namespace

absl::StatusOr<int64_t> CheckTensor(const pb::Tensor& t, absl::string_view what,
                                    const Limits& limits) {
  const int64_t size = WireSize(t.dtype());
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": dtype must be DATA_TYPE_FLOAT32, DATA_TYPE_INT64 or "
        "DATA_TYPE_BFLOAT16, got ",
        pb::DataType_Name(t.dtype()).empty() ? absl::StrCat(t.dtype())
                                             : pb::DataType_Name(t.dtype())));
  }
  Shape shape(t.shape().begin(), t.shape().end());
  ASSIGN_OR_RETURN(int64_t count, CheckedElementCount(
                                      shape, limits.max_tensor_elements, what));
  const std::string type =
      absl::StrCat(pb::DataType_Name(t.dtype()), " ", ShapeToString(shape));
  const int carriers = !t.data().empty() + (t.float_values_size() > 0) +
                       (t.int64_values_size() > 0);
  if (carriers > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": exactly one of data, float_values, int64_values may carry "
        "the values, got ",
        carriers));
  }
  if (t.float_values_size() > 0) {
    if (t.dtype() == pb::DATA_TYPE_INT64) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": float_values given for an int64 tensor (use int64_values)"));
    }
    if (t.float_values_size() != count) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": float_values has ", t.float_values_size(),
                       " values, expected ", count, " for ", type));
    }
  } else if (t.int64_values_size() > 0) {
    if (t.dtype() != pb::DATA_TYPE_INT64) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": int64_values given for a ", pb::DataType_Name(t.dtype()),
          " tensor (use float_values or data)"));
    }
    if (t.int64_values_size() != count) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": int64_values has ", t.int64_values_size(),
                       " values, expected ", count, " for ", type));
    }
  } else if (static_cast<int64_t>(t.data().size()) != count * size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": data has ", t.data().size(), " bytes, expected ",
                     count * size, " for ", type));
  }
  return count * static_cast<int64_t>(DTypeSize(CoreType(t.dtype())));
}

absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t,
                                       absl::string_view what,
                                       const Limits& limits) {
  RETURN_IF_ERROR(CheckTensor(t, what, limits).status());
  Tensor out = Tensor::Empty(CoreType(t.dtype()),
                             Shape(t.shape().begin(), t.shape().end()));
  const int64_t n = out.num_elements();
  if (t.float_values_size() > 0) {
    std::copy(t.float_values().begin(), t.float_values().end(),
              out.data<float>());
  } else if (t.int64_values_size() > 0) {
    std::copy(t.int64_values().begin(), t.int64_values().end(),
              out.data<int64_t>());
  } else if (t.dtype() == pb::DATA_TYPE_BFLOAT16) {
    // bfloat16 is the upper half of a float32.
    const auto* src = reinterpret_cast<const uint8_t*>(t.data().data());
    float* dst = out.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits = (static_cast<uint32_t>(src[2 * i + 1]) << 24) |
                      (static_cast<uint32_t>(src[2 * i]) << 16);
      std::memcpy(&dst[i], &bits, sizeof(bits));
    }
  } else {
    std::memcpy(out.raw_data(), t.data().data(), t.data().size());
  }
  return out;
}

void TensorToProto(const Tensor& t, pb::Tensor* out) {
  // The server computes in float32; a float64 tensor (reference path only)
  // would be a bug, and is narrowed rather than sent mislabelled.
  Tensor wire = t.CastFloat(DType::kFloat32);
  out->set_dtype(wire.dtype() == DType::kInt64 ? pb::DATA_TYPE_INT64
                                               : pb::DATA_TYPE_FLOAT32);
  out->mutable_shape()->Assign(wire.shape().begin(), wire.shape().end());
  out->set_data(wire.raw_data(), wire.num_bytes());
}

absl::StatusOr<GraphDef> GraphFromProto(const pb::Graph& g,
                                        const Limits& limits) {
  if (g.nodes_size() > limits.max_graph_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", g.nodes_size(), " nodes, over the limit of ",
                     limits.max_graph_nodes));
  }
  GraphDef graph;
  graph.inputs.assign(g.inputs().begin(), g.inputs().end());
  graph.outputs.assign(g.outputs().begin(), g.outputs().end());
  for (const auto& [name, t] : g.parameters()) {
    ASSIGN_OR_RETURN(
        graph.parameters[name],
        TensorFromProto(t, Keyed("graph.parameters", name), limits));
  }
  for (const auto& [name, t] : g.buffers()) {
    ASSIGN_OR_RETURN(graph.buffers[name],
                     TensorFromProto(t, Keyed("graph.buffers", name), limits));
  }
  graph.nodes.reserve(g.nodes_size());
  for (const pb::Node& n : g.nodes()) {
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

absl::StatusOr<ComputeArgs> ComputeArgsFromProto(const pb::ComputeRequest& r,
                                                 const Limits& limits,
                                                 GraphDef* graph) {
  RETURN_IF_ERROR(CheckModelIsGraph(r));
  // Every tensor is checked, and their total size bounded, before any is
  // converted.
  int64_t bytes = 0;
  auto add = [&](const auto& map, absl::string_view field) -> absl::Status {
    for (const auto& [name, t] : map) {
      ASSIGN_OR_RETURN(int64_t b, CheckTensor(t, Keyed(field, name), limits));
      bytes = SaturatingAdd(bytes, b);
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(add(r.feeds(), "feeds"));
  RETURN_IF_ERROR(add(r.output_gradients(), "output_gradients"));
  RETURN_IF_ERROR(add(r.graph().parameters(), "graph.parameters"));
  RETURN_IF_ERROR(add(r.graph().buffers(), "graph.buffers"));
  if (bytes > limits.max_request_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the request's tensors take ", bytes,
                     " bytes, over the limit of ", limits.max_request_bytes));
  }
  ASSIGN_OR_RETURN(*graph, GraphFromProto(r.graph(), limits));
  ComputeArgs args;
  for (const auto& [name, t] : r.feeds()) {
    ASSIGN_OR_RETURN(args.feeds[name],
                     TensorFromProto(t, Keyed("feeds", name), limits));
  }
  for (const auto& [name, t] : r.output_gradients()) {
    ASSIGN_OR_RETURN(
        args.output_gradients[name],
        TensorFromProto(t, Keyed("output_gradients", name), limits));
  }
  args.fetch.assign(r.fetch().begin(), r.fetch().end());
  args.loss = r.loss();
  args.wrt.assign(r.wrt().begin(), r.wrt().end());
  args.mode = r.mode() == pb::MODE_EVAL ? Mode::kEval : Mode::kTrain;
  args.seed = r.seed();
  return args;
}

void RunResultToProto(const RunResult& result, pb::ComputeResponse* out) {
  for (const auto& [name, t] : result.outputs) {
    TensorToProto(t, &(*out->mutable_outputs())[name]);
  }
  for (const auto& [name, t] : result.gradients) {
    TensorToProto(t, &(*out->mutable_gradients())[name]);
  }
  for (const auto& [name, t] : result.buffers) {
    TensorToProto(t, &(*out->mutable_buffers())[name]);
  }
}

absl::StatusOr<absl::flat_hash_map<std::string, TensorMeta>>
InputMetasFromProto(const pb::DescribeRequest& r) {
  RETURN_IF_ERROR(CheckModelIsGraph(r));
  absl::flat_hash_map<std::string, TensorMeta> metas;
  for (const auto& [name, shape] : r.input_shapes()) {
    TensorMeta meta;
    switch (shape.dtype()) {
      case pb::DATA_TYPE_UNSPECIFIED:
      case pb::DATA_TYPE_FLOAT32:
      case pb::DATA_TYPE_BFLOAT16:
        meta.dtype = DType::kFloat32;
        break;
      case pb::DATA_TYPE_INT64:
        meta.dtype = DType::kInt64;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            Keyed("input_shapes", name), ": unknown dtype ", shape.dtype()));
    }
    meta.shape.assign(shape.dims().begin(), shape.dims().end());
    metas[name] = std::move(meta);
  }
  return metas;
}

void SummaryToProto(const GraphSummary& summary, pb::DescribeResponse* out) {
  for (const NodeSummary& n : summary.nodes) {
    pb::NodeSummary* node = out->add_nodes();
    node->set_name(n.name);
    node->set_op(n.op);
    for (const TensorMeta& meta : n.outputs) {
      pb::TensorShape* shape = node->add_output_shapes();
      shape->mutable_dims()->Assign(meta.shape.begin(), meta.shape.end());
      shape->set_dtype(meta.dtype == DType::kInt64 ? pb::DATA_TYPE_INT64
                                                   : pb::DATA_TYPE_FLOAT32);
    }
    node->set_parameters(n.parameters);
    node->set_forward_flops(n.forward_flops);
  }
  out->set_total_parameters(summary.total_parameters);
  out->set_forward_flops(summary.forward_flops);
  out->set_backward_flops(summary.backward_flops);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace gradserve::server
