// The ONNX op table: one row per ai.onnx op, the gradserve ops it becomes and
// how its attributes map. Rows without a handler map one to one; the
// handlers below translate the rest, or fold values known at import time
// (shape arithmetic: Shape, Gather, Unsqueeze, Concat, ...).
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "absl/strings/str_join.h"
#include "core/import/onnx/node_import.h"
#include "core/status_macros.h"

namespace gradserve::onnx_import {
namespace {

using Ints = std::vector<int64_t>;

int64_t Product(const Ints& dims, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= dims[i];
  return p;
}

absl::StatusOr<int> NormalizeAxis(const NodeImport& node, int64_t axis,
                                  int rank, absl::string_view attr) {
  if (axis < -rank || axis >= rank) {
    return node.Invalid(attr, " = ", axis, " is outside [", -rank, ", ", rank,
                        ")");
  }
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

absl::StatusOr<int> RankOf(const NodeImport& node, int i,
                           absl::string_view why) {
  std::optional<int> rank = node.Rank(i);
  if (!rank) {
    return node.Unsupported("the rank of input '", node.Input(i),
                            "' is not known when the model is imported (", why,
                            " needs it)");
  }
  return *rank;
}

std::vector<std::string> Inputs(const NodeImport& node) {
  std::vector<std::string> inputs;
  for (int i = 0; i < node.NumInputs(); ++i) inputs.push_back(node.Input(i));
  while (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
  return inputs;
}

void EmitIdentity(NodeImport& node) {
  node.Emit("Scale", {node.Input(0)}, {node.Output(0)}, {{"factor", 1.0}});
}

absl::Status Neg(NodeImport& node, const char* op) {
  node.Emit(op, {node.Input(0)}, {node.Output(0)}, {{"factor", -1.0}});
  return absl::OkStatus();
}

// y = x seen with `dims` (all known), a view.
void EmitReshape(NodeImport& node, const std::string& x, const std::string& y,
                 Ints dims, absl::string_view suffix = "") {
  node.Emit("Reshape", {x}, {y}, {{"shape", std::move(dims)}}, suffix);
}

// --- Folding: values known at import time --------------------------------

Tensor IntVector(const Ints& values) {
  return Tensor::FromValues<int64_t>({static_cast<int64_t>(values.size())},
                                     absl::MakeConstSpan(values));
}

Ints IntValues(const Tensor& t) {
  if (t.dtype() == DType::kInt64) {
    auto v = t.values<int64_t>();
    return Ints(v.begin(), v.end());
  }
  Ints out;
  for (double f : t.CastFloat(DType::kFloat64).values<double>()) {
    out.push_back(static_cast<int64_t>(f));
  }
  return out;
}

absl::Status FoldConstant(NodeImport& node, const char*) {
  const auto& a = node.proto().attribute(0);  // the checker allows exactly one
  const std::string what = absl::StrCat("Constant '", node.Output(0), "'");
  if (a.name() == "value") {
    ASSIGN_OR_RETURN(Tensor t, TensorFromProto(a.t(), what, node.limits()));
    node.SetConstant(0, std::move(t));
  } else if (a.name() == "value_float") {
    node.SetConstant(0, Tensor::Scalar<float>(a.f()));
  } else if (a.name() == "value_floats") {
    std::vector<float> v(a.floats().begin(), a.floats().end());
    node.SetConstant(
        0, Tensor::FromValues<float>({static_cast<int64_t>(v.size())}, v));
  } else if (a.name() == "value_int") {
    node.SetConstant(0, Tensor::Scalar<int64_t>(a.i()));
  } else if (a.name() == "value_ints") {
    node.SetConstant(0, IntVector(node.Ints("value_ints")));
  } else {
    return node.Unsupported("attribute '", a.name(), "' is not supported");
  }
  return absl::OkStatus();
}

absl::Status FoldShape(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(Ints dims, node.StaticShape(0, "Shape"));
  const int rank = static_cast<int>(dims.size());
  auto clamp = [rank](int64_t i) {
    return std::clamp<int64_t>(i < 0 ? i + rank : i, 0, rank);
  };
  const int64_t start = clamp(node.Int("start", 0));
  const int64_t end = clamp(node.Int("end", rank));
  Ints slice;
  for (int64_t i = start; i < end; ++i) slice.push_back(dims[i]);
  node.SetConstant(0, IntVector(slice));
  return absl::OkStatus();
}

// Copies `outer` blocks of `block` bytes, block i from from + i·from_stride
// to out + i·out_stride.
void CopyBlocks(const char* from, int64_t from_stride, int64_t outer,
                int64_t block, char* out, int64_t out_stride) {
  for (int64_t i = 0; i < outer; ++i) {
    std::memcpy(out + i * out_stride, from + i * from_stride, block);
  }
}

absl::Status FoldGather(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(Tensor data, node.ConstantInput(0, "the data"));
  ASSIGN_OR_RETURN(Tensor indices, node.ConstantInput(1, "the indices"));
  ASSIGN_OR_RETURN(
      int axis, NormalizeAxis(node, node.Int("axis", 0), data.rank(), "axis"));
  Ints shape(data.shape().begin(), data.shape().begin() + axis);
  shape.insert(shape.end(), indices.shape().begin(), indices.shape().end());
  shape.insert(shape.end(), data.shape().begin() + axis + 1,
               data.shape().end());
  Tensor out = Tensor::Empty(data.dtype(), shape);
  const int64_t outer = Product(data.shape(), 0, axis);
  const int64_t block = Product(data.shape(), axis + 1, data.rank()) *
                        static_cast<int64_t>(DTypeSize(data.dtype()));
  const int64_t n = data.dim(axis);
  const Ints index = IntValues(indices);
  for (size_t k = 0; k < index.size(); ++k) {
    const int64_t i = index[k] < 0 ? index[k] + n : index[k];
    if (i < 0 || i >= n) {
      return node.Invalid("index ", index[k], " is outside [", -n, ", ", n,
                          ")");
    }
    // Row i of each outer block of data to row k of out's.
    CopyBlocks(static_cast<const char*>(data.raw_data()) + i * block, n * block,
               outer, block, static_cast<char*>(out.raw_data()) + k * block,
               static_cast<int64_t>(index.size()) * block);
  }
  node.SetConstant(0, std::move(out));
  return absl::OkStatus();
}

bool IsFloatType(int64_t type) {
  return type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::DOUBLE;
}

// Float values of a known tensor as `to` (float32 or float64).
Tensor CastFloats(const Tensor& x, int64_t to) {
  std::vector<double> v;
  if (x.dtype() == DType::kInt64) {
    for (int64_t i : x.values<int64_t>()) v.push_back(static_cast<double>(i));
  } else {
    const Tensor d = x.CastFloat(DType::kFloat64);
    v.assign(d.values<double>().begin(), d.values<double>().end());
  }
  const Tensor t = Tensor::FromValues<double>(x.shape(), v);
  return to == onnx::TensorProto::FLOAT ? t.CastFloat(DType::kFloat32) : t;
}

// At run time only to the input's own float type (a program computes in
// one float type); known values to float32, float64 and integer types.
absl::Status Cast(NodeImport& node, const char*) {
  const int64_t to = node.Int("to", 0);
  if (!node.IsConstant(0)) {
    if (IsFloatType(to) && node.ElemType(0) == to) {
      EmitIdentity(node);
      return absl::OkStatus();
    }
    return node.Unsupported("Cast to ", onnx::TensorProto::DataType_Name(to),
                            " at run time is not supported");
  }
  ASSIGN_OR_RETURN(Tensor x, node.ConstantInput(0, "the value"));
  if (IsFloatType(to)) {
    node.SetConstant(0, CastFloats(x, to));
    return absl::OkStatus();
  }
  if (to == onnx::TensorProto::STRING || to == onnx::TensorProto::FLOAT16 ||
      to == onnx::TensorProto::BFLOAT16) {
    return node.Unsupported("Cast to ", onnx::TensorProto::DataType_Name(to),
                            " is not supported");
  }
  Ints v = IntValues(x);
  if (to == onnx::TensorProto::BOOL) {
    for (int64_t& i : v) i = i != 0;
  }
  node.SetConstant(0, Tensor::FromValues<int64_t>(x.shape(), v));
  return absl::OkStatus();
}

// Unsqueeze's and Squeeze's axes: an attribute before opset 13, an input
// from it on.
absl::StatusOr<Ints> AxesOf(const NodeImport& node) {
  if (node.opset() < 13) return node.Ints("axes");
  if (!node.HasInput(1)) return Ints{};
  ASSIGN_OR_RETURN(Tensor axes, node.ConstantInput(1, "the axes"));
  return IntValues(axes);
}

// Reshape, Unsqueeze, Squeeze, Flatten with the new dims known: fold a known
// value, else a Reshape view.
absl::Status ReshapeTo(NodeImport& node, Ints dims) {
  if (node.IsConstant(0)) {
    ASSIGN_OR_RETURN(Tensor x, node.ConstantInput(0, "the value"));
    if (ElementCount(dims) != x.num_elements()) {
      return node.Invalid("cannot view ", ShapeToString(x.shape()), " as ",
                          ShapeToString(dims));
    }
    node.SetConstant(0, x.Reshaped(std::move(dims)));
    return absl::OkStatus();
  }
  EmitReshape(node, node.Input(0), node.Output(0), std::move(dims));
  return absl::OkStatus();
}

// The dims of input 0: a known value's, or all-known inferred ones.
absl::StatusOr<Ints> DimsOf(const NodeImport& node, absl::string_view why) {
  if (!node.IsConstant(0)) return node.StaticShape(0, why);
  ASSIGN_OR_RETURN(Tensor x, node.ConstantInput(0, "the value"));
  return x.shape();
}

absl::Status Unsqueeze(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(Ints axes, AxesOf(node));
  ASSIGN_OR_RETURN(Ints dims, DimsOf(node, "Unsqueeze"));
  const int rank = static_cast<int>(dims.size() + axes.size());
  Ints inserted(rank, 0);
  for (int64_t a : axes) {
    ASSIGN_OR_RETURN(int axis, NormalizeAxis(node, a, rank, "axes"));
    inserted[axis] = 1;
  }
  Ints out;
  size_t next = 0;
  for (int d = 0; d < rank; ++d) out.push_back(inserted[d] ? 1 : dims[next++]);
  return ReshapeTo(node, std::move(out));
}

absl::Status Squeeze(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(Ints axes, AxesOf(node));
  ASSIGN_OR_RETURN(Ints dims, DimsOf(node, "Squeeze"));
  const int rank = static_cast<int>(dims.size());
  Ints removed(rank, axes.empty() ? 1 : 0);
  for (int64_t a : axes) {
    ASSIGN_OR_RETURN(int axis, NormalizeAxis(node, a, rank, "axes"));
    if (dims[axis] != 1) {
      return node.Invalid("axis ", a, " has size ", dims[axis], ", not 1");
    }
    removed[axis] = 1;
  }
  Ints out;
  for (int d = 0; d < rank; ++d) {
    if (!(removed[d] && dims[d] == 1)) out.push_back(dims[d]);
  }
  return ReshapeTo(node, std::move(out));
}

absl::Status ConcatConstants(NodeImport& node, int axis) {
  std::vector<Tensor> parts;
  for (int i = 0; i < node.NumInputs(); ++i) {
    ASSIGN_OR_RETURN(Tensor t, node.ConstantInput(i, "a part"));
    if (!parts.empty() && t.dtype() != parts.front().dtype()) {
      return node.Invalid("the parts' element types differ");
    }
    parts.push_back(std::move(t));
  }
  Ints shape = parts[0].shape();
  shape[axis] = 0;
  for (const Tensor& t : parts) shape[axis] += t.dim(axis);
  Tensor out = Tensor::Empty(parts[0].dtype(), shape);
  const int64_t size = static_cast<int64_t>(DTypeSize(out.dtype()));
  const int64_t outer = Product(shape, 0, axis);
  const int64_t stride = Product(shape, axis, shape.size()) * size;
  int64_t offset = 0;
  for (const Tensor& t : parts) {
    const int64_t block = Product(t.shape(), axis, t.rank()) * size;
    CopyBlocks(static_cast<const char*>(t.raw_data()), block, outer, block,
               static_cast<char*>(out.raw_data()) + offset, stride);
    offset += block;
  }
  node.SetConstant(0, std::move(out));
  return absl::OkStatus();
}

absl::Status Concat(NodeImport& node, const char* op) {
  const int64_t axis = node.Int("axis", 0);
  bool all_constant = true;
  for (int i = 0; i < node.NumInputs(); ++i) {
    all_constant = all_constant && node.IsConstant(i);
  }
  if (!all_constant) {
    node.Emit(op, Inputs(node), {node.Output(0)}, {{"axis", axis}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Tensor first, node.ConstantInput(0, "a part"));
  ASSIGN_OR_RETURN(int a, NormalizeAxis(node, axis, first.rank(), "axis"));
  return ConcatConstants(node, a);
}

absl::Status Identity(NodeImport& node, const char*) {
  if (node.IsConstant(0)) {
    ASSIGN_OR_RETURN(Tensor x, node.ConstantInput(0, "the value"));
    node.SetConstant(0, std::move(x));
  } else {
    EmitIdentity(node);
  }
  return absl::OkStatus();
}

// --- Shapes ---------------------------------------------------------------

// ONNX's 0 copies the input's dim (unless allowzero); -1 stays inferred.
absl::Status Reshape(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(Tensor shape, node.ConstantInput(1, "the shape"));
  Ints dims = IntValues(shape);
  const bool allowzero = node.Int("allowzero", 0) != 0;
  if (!allowzero && std::count(dims.begin(), dims.end(), 0) > 0) {
    ASSIGN_OR_RETURN(Ints in, DimsOf(node, "a 0 in Reshape's shape"));
    for (size_t d = 0; d < dims.size(); ++d) {
      if (dims[d] != 0) continue;
      if (d >= in.size())
        return node.Invalid("shape dim ", d, " copies no dim");
      dims[d] = in[d];
    }
  }
  if (node.IsConstant(0) && std::count(dims.begin(), dims.end(), -1) > 0) {
    ASSIGN_OR_RETURN(Tensor x, node.ConstantInput(0, "the data"));
    int64_t known = 1;
    for (int64_t d : dims) known *= d == -1 ? 1 : d;
    for (int64_t& d : dims)
      d = d == -1 && known > 0 ? x.num_elements() / known : d;
  }
  return ReshapeTo(node, std::move(dims));
}

// ONNX's Flatten is always 2-d: [prod(dims[:axis]), prod(dims[axis:])].
absl::Status Flatten(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "Flatten"));
  int64_t axis = node.Int("axis", 1);  // in [-rank, rank]
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) {
    return node.Invalid("axis = ", node.Int("axis", 1), " is outside [", -rank,
                        ", ", rank, "]");
  }
  if (axis == 1 && rank >= 2 && !node.IsConstant(0)) {
    node.Emit("Flatten", {node.Input(0)}, {node.Output(0)},
              {{"start_dim", int64_t{1}}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Ints dims, node.StaticShape(0, "Flatten"));
  return ReshapeTo(node,
                   {Product(dims, 0, axis), Product(dims, axis, dims.size())});
}

// --- Layers ---------------------------------------------------------------

// Y = alpha·op(A)·op(B) + beta·C, op(A) = Aᵀ when transA (a Permute of
// it), op(B) = Bᵀ when transB.
absl::Status Gemm(NodeImport& node, const char*) {
  std::string a = node.Input(0);
  if (node.Int("transA", 0) != 0) {
    a = node.Temp("a_transposed");
    node.Emit("Permute", {node.Input(0)}, {a}, {{"dims", Ints{1, 0}}},
              "transA");
  }
  const double alpha = node.Float("alpha", 1.0);
  const double beta = node.Float("beta", 1.0);
  const bool trans_b = node.Int("transB", 0) != 0;
  const bool has_c = node.HasInput(2) && beta != 0;
  const std::string& y = node.Output(0);
  if (trans_b && has_c && alpha == 1 && beta == 1) {
    auto b = node.StaticShape(1, "Gemm");
    auto c = node.StaticShape(2, "Gemm");
    if (b.ok() && c.ok() && b->size() == 2 && *c == Ints{(*b)[0]}) {
      // a bias of Linear's shape
      node.Emit("Linear", {a, node.Input(1), node.Input(2)}, {y});
      return absl::OkStatus();
    }
  }
  const bool last = alpha == 1 && !has_c;
  const std::string product = last ? y : node.Temp("product");
  node.Emit(trans_b ? "Linear" : "MatMul", {a, node.Input(1)}, {product});
  std::string scaled = product;
  if (alpha != 1) {
    scaled = has_c ? node.Temp("alpha") : y;
    node.Emit("Scale", {product}, {scaled}, {{"factor", alpha}}, "alpha");
  }
  if (!has_c) return absl::OkStatus();
  std::string c = node.Input(2);
  if (beta != 1) {
    c = node.Temp("beta");
    node.Emit("Scale", {node.Input(2)}, {c}, {{"factor", beta}}, "beta");
  }
  node.Emit("Add", {scaled, c}, {y}, {}, "add_c");
  return absl::OkStatus();
}

// Softmax before opset 13 flattens to 2-d at `axis` (default 1); from 13 on
// it runs along `axis` (default -1).
absl::Status Softmax(NodeImport& node, const char* op) {
  if (node.opset() >= 13) {
    node.Emit(op, {node.Input(0)}, {node.Output(0)},
              {{"axis", node.Int("axis", -1)}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "Softmax before opset 13"));
  ASSIGN_OR_RETURN(int axis,
                   NormalizeAxis(node, node.Int("axis", 1), rank, "axis"));
  if (axis == rank - 1) {
    node.Emit(op, {node.Input(0)}, {node.Output(0)}, {{"axis", int64_t{-1}}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Ints dims, node.StaticShape(0, "Softmax before opset 13"));
  const std::string flat = node.Temp("2d"), soft = node.Temp("softmax");
  EmitReshape(node, node.Input(0), flat,
              {Product(dims, 0, axis), Product(dims, axis, dims.size())},
              "flatten");
  node.Emit(op, {flat}, {soft}, {{"axis", int64_t{1}}}, "softmax");
  EmitReshape(node, soft, node.Output(0), dims, "unflatten");
  return absl::OkStatus();
}

// The padding of a convolution or pooling window in ONNX's order (each
// dim's before, then each dim's after), from pads or auto_pad.
absl::StatusOr<Ints> Pads(const NodeImport& node, const Ints& kernel,
                          const Ints& strides, const Ints& dilations) {
  const size_t n = kernel.size();
  const std::string auto_pad = node.String("auto_pad", "NOTSET");
  Ints pads(2 * n, 0);
  if (auto_pad == "NOTSET") {
    pads = node.Ints("pads", pads);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    ASSIGN_OR_RETURN(Ints in, node.StaticShape(0, "auto_pad SAME"));
    for (size_t d = 0; d < n; ++d) {
      const int64_t extent = in[d + 2], s = strides[d];
      const int64_t out = (extent + s - 1) / s;
      const int64_t total = std::max<int64_t>(
          0, (out - 1) * s + (kernel[d] - 1) * dilations[d] + 1 - extent);
      pads[d] = auto_pad == "SAME_LOWER" ? (total + 1) / 2 : total / 2;
      pads[d + n] = total - pads[d];
    }
  } else if (auto_pad != "VALID") {
    return node.Invalid("auto_pad '", auto_pad, "' is not an ONNX value");
  }
  if (pads.size() != 2 * n) {
    return node.Invalid("pads has ", pads.size(), " values, expected ", 2 * n);
  }
  return pads;
}

// gradserve's padding attribute: one int per dim when both sides are
// equal, else ONNX's 2·n.
Ints PaddingAttr(Ints pads) {
  const size_t n = pads.size() / 2;
  if (std::equal(pads.begin(), pads.begin() + n, pads.begin() + n)) {
    pads.resize(n);
  }
  return pads;
}

// A convolution's window: 1-d or 2-d (`op` names gradserve's two), the
// kernel from kernel_shape or the weight's dims, strides and dilations.
struct ConvWindow {
  size_t n;
  Ints kernel, strides, dilations;
};
absl::StatusOr<ConvWindow> ConvWindowOf(const NodeImport& node,
                                        absl::string_view op) {
  ASSIGN_OR_RETURN(Ints w, node.StaticShape(1, op));
  const size_t n = w.size() < 2 ? 0 : w.size() - 2;
  if (n != 1 && n != 2) {
    return node.Unsupported(n, "-d window (gradserve has ", op, "1d and ", op,
                            "2d)");
  }
  return ConvWindow{n, node.Ints("kernel_shape", Ints(w.begin() + 2, w.end())),
                    node.Ints("strides", Ints(n, 1)),
                    node.Ints("dilations", Ints(n, 1))};
}

absl::Status Conv(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(ConvWindow w, ConvWindowOf(node, "Conv"));
  ASSIGN_OR_RETURN(Ints pads, Pads(node, w.kernel, w.strides, w.dilations));
  node.Emit(w.n == 2 ? "Conv2d" : "Conv1d", Inputs(node), {node.Output(0)},
            {{"stride", w.strides},
             {"padding", PaddingAttr(std::move(pads))},
             {"dilation", w.dilations},
             {"groups", node.Int("group", 1)}});
  return absl::OkStatus();
}

// ConvTranspose's pads in ONNX's order: from output_shape or auto_pad
// SAME (y = x·stride), else the pads attribute. Of the total padding ONNX
// puts the odd one at the end for SAME_UPPER, at the start otherwise; a
// negative total (an output_shape past the full output) grows
// output_padding instead.
absl::StatusOr<Ints> TransposedPads(const NodeImport& node, const Ints& kernel,
                                    const Ints& strides, const Ints& dilations,
                                    Ints& output_padding) {
  const size_t n = kernel.size();
  const std::string auto_pad = node.String("auto_pad", "NOTSET");
  Ints shape = node.Ints("output_shape");
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  if (shape.empty() && !same) {
    Ints pads = auto_pad == "VALID" ? Ints(2 * n, 0)
                                    : node.Ints("pads", Ints(2 * n, 0));
    if (pads.size() != 2 * n) {
      return node.Invalid("pads has ", pads.size(), " values, expected ",
                          2 * n);
    }
    return pads;
  }
  ASSIGN_OR_RETURN(Ints in,
                   node.StaticShape(0, "ConvTranspose's output_shape"));
  if (shape.size() > n) shape.erase(shape.begin(), shape.end() - n);
  Ints pads(2 * n, 0);
  for (size_t d = 0; d < n; ++d) {
    const int64_t out = shape.empty() ? in[d + 2] * strides[d] : shape[d];
    const int64_t total = strides[d] * (in[d + 2] - 1) + output_padding[d] +
                          (kernel[d] - 1) * dilations[d] + 1 - out;
    if (total < 0) {
      output_padding[d] -= total;
      continue;
    }
    const int64_t small = total / 2, large = total - small;
    pads[d] = auto_pad == "SAME_UPPER" ? small : large;
    pads[d + n] = total - pads[d];
  }
  return pads;
}

// ConvTranspose1d / 2d with the smaller pad of each dim as padding; what
// asymmetric pads leave over is cropped by a Pad of negative amounts.
absl::Status ConvTranspose(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(ConvWindow w, ConvWindowOf(node, "ConvTranspose"));
  const size_t n = w.n;
  const Ints &strides = w.strides, &dilations = w.dilations;
  Ints output_padding = node.Ints("output_padding", Ints(n, 0));
  ASSIGN_OR_RETURN(Ints pads, TransposedPads(node, w.kernel, strides, dilations,
                                             output_padding));
  Ints padding(n), crop;
  for (size_t d = 0; d < n; ++d) {
    if (pads[d] < 0 || pads[d + n] < 0) {
      return node.Unsupported("negative pads [", absl::StrJoin(pads, ", "),
                              "]");
    }
    if (output_padding[d] >= std::max(strides[d], dilations[d])) {
      return node.Unsupported("output_padding ", output_padding[d],
                              " not below the stride or the dilation");
    }
    padding[d] = std::min(pads[d], pads[d + n]);
  }
  for (size_t d = n; d-- > 0;) {  // torch's order, cropping
    crop.push_back(padding[d] - pads[d]);
    crop.push_back(padding[d] - pads[d + n]);
  }
  const bool cropped =
      std::any_of(crop.begin(), crop.end(), [](int64_t c) { return c != 0; });
  const std::string y = cropped ? node.Temp("uncropped") : node.Output(0);
  node.Emit(n == 2 ? "ConvTranspose2d" : "ConvTranspose1d", Inputs(node), {y},
            {{"stride", strides},
             {"padding", padding},
             {"output_padding", output_padding},
             {"dilation", dilations},
             {"groups", node.Int("group", 1)}});
  if (cropped) {
    node.Emit("Pad", {y}, {node.Output(0)}, {{"pads", crop}}, "crop");
  }
  return absl::OkStatus();
}

// PyTorch's (gradserve's) ceil-mode extent of a window `span` wide over
// `in` padded by (begin, end): the last window must start inside the input
// or its left padding.
int64_t CeilExtent(int64_t in, int64_t begin, int64_t end, int64_t span,
                   int64_t stride) {
  const int64_t reach = in + begin + end - span;
  int64_t out = (reach + stride - 1) / stride + 1;
  if ((out - 1) * stride >= in + begin) --out;
  return out;
}

// ceil_mode = 1 where ONNX's output size (its shape inference's) is
// PyTorch's: ONNX 1.12 keeps a last window that starts in the right padding.
absl::Status CheckCeilMode(const NodeImport& node, const Ints& kernel,
                           const Ints& strides, const Ints& dilations,
                           const Ints& pads) {
  ASSIGN_OR_RETURN(Ints in, node.StaticShape(0, "ceil_mode = 1"));
  std::optional<Ints> out = node.OutputDims(0);
  const size_t n = kernel.size();
  for (size_t d = 0; d < n; ++d) {
    const int64_t span = dilations[d] * (kernel[d] - 1) + 1;
    const int64_t ours =
        CeilExtent(in[d + 2], pads[d], pads[d + n], span, strides[d]);
    if (!out || out->size() != n + 2 || (*out)[d + 2] != ours) {
      return node.Unsupported(
          "ceil_mode = 1 where ONNX's last window starts in the padding "
          "(gradserve's ceil mode is PyTorch's, which drops it)");
    }
  }
  return absl::OkStatus();
}

// A 1-d window [k] as the 2-d window [1, k] over x seen as [N, C, 1, L].
struct PoolWindow {
  Ints kernel, strides, dilations, pads;
};
PoolWindow As2d(const PoolWindow& w) {
  return {{1, w.kernel[0]},
          {1, w.strides[0]},
          {1, w.dilations[0]},
          {0, w.pads[0], 0, w.pads[1]}};
}

// 1-d pooling runs as 2-d: x and the outputs viewed with a height of 1.
absl::Status EmitPool1d(NodeImport& node, const char* op, AttrMap attrs,
                        const std::vector<std::string>& outputs) {
  ASSIGN_OR_RETURN(Ints x, node.StaticShape(0, "1-d pooling"));
  std::optional<Ints> y = node.OutputDims(0);
  if (x.size() != 3 || !y || y->size() != 3 ||
      std::count(y->begin(), y->end(), -1) > 0) {
    return node.Unsupported(
        "1-d pooling whose output shape is not known at import");
  }
  const std::string x2 = node.Temp("2d");
  EmitReshape(node, node.Input(0), x2, {x[0], x[1], 1, x[2]}, "as_2d");
  std::vector<std::string> pooled;
  for (size_t j = 0; j < outputs.size(); ++j) {
    pooled.push_back(node.Temp(absl::StrCat("pooled_", j)));
  }
  node.Emit(op, {x2}, pooled, std::move(attrs), "pool");
  for (size_t j = 0; j < outputs.size(); ++j) {
    EmitReshape(node, pooled[j], outputs[j], *y, absl::StrCat("as_1d_", j));
  }
  return absl::OkStatus();
}

absl::Status Pool(NodeImport& node, const char* op) {
  const bool max = std::string(op) == "MaxPool2d";
  PoolWindow w{node.Ints("kernel_shape")};
  const size_t n = w.kernel.size();
  if (n != 1 && n != 2) {
    return node.Unsupported(n,
                            "-d pooling (gradserve pools 1-d and 2-d "
                            "windows)");
  }
  w.strides = node.Ints("strides", Ints(n, 1));
  w.dilations = node.Ints("dilations", Ints(n, 1));
  ASSIGN_OR_RETURN(w.pads, Pads(node, w.kernel, w.strides, w.dilations));
  for (size_t d = 0; d < 2 * n; ++d) {
    if (w.pads[d] > w.kernel[d % n] / 2) {
      return node.Unsupported("pads [", absl::StrJoin(w.pads, ", "),
                              "] over half the kernel (gradserve pads at "
                              "most half a pooling window)");
    }
  }
  const bool ceil = node.Int("ceil_mode", 0) != 0;
  if (ceil) {
    RETURN_IF_ERROR(
        CheckCeilMode(node, w.kernel, w.strides, w.dilations, w.pads));
  }
  if (n == 1) w = As2d(w);
  AttrMap attrs = {{"kernel", w.kernel},
                   {"stride", w.strides},
                   {"padding", PaddingAttr(w.pads)}};
  if (ceil) attrs["ceil_mode"] = int64_t{1};
  if (max) {
    attrs["dilation"] = w.dilations;
  } else {
    attrs["count_include_pad"] = node.Int("count_include_pad", 0);
  }
  std::vector<std::string> outputs = {node.Output(0)};
  if (max && node.OutputUsed(1)) {
    // ONNX's Indices: offsets into all of x (row-major unless storage_order).
    if (node.Int("storage_order", 0) != 0) {
      return node.Unsupported(
          "Indices with storage_order = 1 (gradserve counts "
          "row-major)");
    }
    attrs["flat_indices"] = int64_t{1};
    outputs.push_back(node.Output(1));
  }
  RETURN_IF_ERROR(node.RejectUsedOutputs(outputs.size(), "Indices"));
  if (n == 1) return EmitPool1d(node, op, std::move(attrs), outputs);
  node.Emit(op, {node.Input(0)}, std::move(outputs), std::move(attrs));
  return absl::OkStatus();
}

// A window over all of H and W.
absl::Status GlobalMaxPool(NodeImport& node, const char* op) {
  ASSIGN_OR_RETURN(Ints x, node.StaticShape(0, "GlobalMaxPool"));
  if (x.size() != 4) {
    return node.Unsupported("input of rank ", x.size(),
                            " (gradserve pools 2-d windows)");
  }
  node.Emit(op, {node.Input(0)}, {node.Output(0)},
            {{"kernel", Ints{x[2], x[3]}}});
  return absl::OkStatus();
}

absl::Status GlobalAveragePool(NodeImport& node, const char* op) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "GlobalAveragePool"));
  Ints axes;
  for (int d = 2; d < rank; ++d) axes.push_back(d);
  node.Emit(op, {node.Input(0)}, {node.Output(0)},
            {{"axes", axes}, {"keepdims", int64_t{1}}});
  return absl::OkStatus();
}

// A float scalar of input 0's float type, known at import.
std::string FloatConstant(NodeImport& node, absl::string_view suffix,
                          double value) {
  const int32_t type = node.ElemType(0) == onnx::TensorProto::DOUBLE
                           ? onnx::TensorProto::DOUBLE
                           : onnx::TensorProto::FLOAT;
  return node.NewConstant(suffix,
                          CastFloats(Tensor::Scalar<double>(value), type));
}

// x's mean over `reduce`'s axes (kept as 1s) into `mean`, and optionally
// its biased variance: Mean, Sub, Mul, Mean.
struct Moments {
  std::string mean, centered, var;
};
Moments EmitMoments(NodeImport& node, const AttrMap& reduce, std::string mean,
                    bool with_var) {
  Moments m{std::move(mean), "", ""};
  node.Emit("Mean", {node.Input(0)}, {m.mean}, reduce, "mean");
  if (!with_var) return m;
  m.centered = node.Temp("centered");
  m.var = node.Temp("var");
  const std::string squared = node.Temp("sq");
  node.Emit("Sub", {node.Input(0), m.mean}, {m.centered}, {}, "centered");
  node.Emit("Mul", {m.centered, m.centered}, {squared}, {}, "squared");
  node.Emit("Mean", {squared}, {m.var}, reduce, "var");
  return m;
}

// √(var + epsilon): Add, Sqrt.
std::string EmitStd(NodeImport& node, const std::string& var, double epsilon) {
  const std::string shifted = node.Temp("var_eps"), std = node.Temp("std");
  node.Emit("Add", {var, FloatConstant(node, "epsilon", epsilon)}, {shifted},
            {}, "var_eps");
  node.Emit("Sqrt", {shifted}, {std}, {}, "std");
  return std;
}

// ONNX's training_mode with its running_mean and running_var outputs read:
// the node's own semantics, whatever the request's mode: batch statistics
// (the biased variance), Y = (X − mean)/√(var + epsilon)·scale + B, and
// running = input·momentum + batch·(1 − momentum), composed of core ops
// (Mean, Sub, Mul, Add, Sqrt, Div, Reshape, Scale) so that gradients flow
// through all three outputs.
absl::Status BatchNormalizationTraining(NodeImport& node, int rank) {
  ASSIGN_OR_RETURN(Ints scale, node.StaticShape(1, "training_mode"));
  if (scale.size() != 1) return node.Invalid("scale is not a vector");
  Ints axes = {0}, channel(rank, 1);
  for (int d = 2; d < rank; ++d) axes.push_back(d);
  channel[1] = scale[0];
  const Moments m =
      EmitMoments(node, {{"axes", axes}, {"keepdims", int64_t{1}}},
                  node.Temp("batch_mean"), true);
  const std::string std = EmitStd(node, m.var, node.Float("epsilon", 1e-5));
  const std::string normalized = node.Temp("normalized"),
                    w = node.Temp("scale"), b = node.Temp("bias"),
                    scaled = node.Temp("scaled");
  node.Emit("Div", {m.centered, std}, {normalized}, {}, "normalized");
  EmitReshape(node, node.Input(1), w, channel, "scale");
  EmitReshape(node, node.Input(2), b, channel, "bias");
  node.Emit("Mul", {normalized, w}, {scaled}, {}, "scaled");
  node.Emit("Add", {scaled, b}, {node.Output(0)}, {}, "shifted");
  const double momentum = node.Float("momentum", 0.9);
  const std::pair<const std::string*, int> stats[] = {{&m.mean, 3},
                                                      {&m.var, 4}};
  for (int j : {1, 2}) {
    if (!node.OutputUsed(j)) continue;
    const auto [batch, input] = stats[j - 1];
    const std::string tag = j == 1 ? "running_mean" : "running_var";
    const std::string flat = node.Temp(tag + "_batch"),
                      old_part = node.Temp(tag + "_old"),
                      new_part = node.Temp(tag + "_new");
    EmitReshape(node, *batch, flat, scale, tag + "_batch");
    node.Emit("Scale", {node.Input(input)}, {old_part}, {{"factor", momentum}},
              tag + "_old");
    node.Emit("Scale", {flat}, {new_part}, {{"factor", 1.0 - momentum}},
              tag + "_new");
    node.Emit("Add", {old_part, new_part}, {node.Output(j)}, {}, tag);
  }
  return absl::OkStatus();
}

// ONNX's momentum weighs the running statistic, PyTorch's (gradserve's) the
// batch's. The request's mode, not training_mode, picks batch or running
// statistics (as module.train() / eval() do), unless the node's
// running_mean or running_var output is read (opset 14 on): then the node
// is ONNX's training_mode (BatchNormalizationTraining).
absl::Status BatchNormalization(NodeImport& node, const char* op) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "BatchNormalization"));
  node.MarkBuffer(3);
  node.MarkBuffer(4);
  const bool outputs = node.OutputUsed(1) || node.OutputUsed(2);
  if (outputs && node.opset() >= 14 && node.Int("training_mode", 0) != 0) {
    return BatchNormalizationTraining(node, rank);
  }
  RETURN_IF_ERROR(node.RejectUsedOutputs(1, "the updated or saved statistics"));
  if (rank < 2 || rank > 4) {
    return node.Unsupported("input of rank ", rank,
                            " (gradserve's BatchNorm takes rank 2 to 4)");
  }
  node.Emit(op, Inputs(node), {node.Output(0)},
            {{"epsilon", node.Float("epsilon", 1e-5)},
             {"momentum", 1.0 - node.Float("momentum", 0.9)}});
  return absl::OkStatus();
}

// InstanceNorm1d / 2d over ranks 3 and 4 (each sample's statistics, no
// running ones); other ranks as GroupNorm with a group per channel.
absl::Status InstanceNormalization(NodeImport& node, const char*) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "InstanceNormalization"));
  AttrMap attrs = {{"epsilon", node.Float("epsilon", 1e-5)}};
  std::string op = rank == 3 ? "InstanceNorm1d" : "InstanceNorm2d";
  if (rank != 3 && rank != 4) {
    ASSIGN_OR_RETURN(Ints scale, node.StaticShape(1, "InstanceNormalization"));
    if (rank < 3 || scale.size() != 1) {
      return node.Unsupported("input of rank ", rank);
    }
    op = "GroupNorm";
    attrs["num_groups"] = scale[0];
  }
  node.Emit(op, Inputs(node), {node.Output(0)}, std::move(attrs));
  return absl::OkStatus();
}

// The request's mode, not training_mode, decides whether it drops. The mask
// output, when named, is gradserve's float 0/1 mask (ONNX's is bool).
absl::Status Dropout(NodeImport& node, const char* op) {
  double p = node.Float("ratio", 0.5);
  if (node.opset() >= 12 && node.HasInput(1)) {
    ASSIGN_OR_RETURN(Tensor ratio, node.ConstantInput(1, "the ratio"));
    if (ratio.num_elements() != 1 || ratio.dtype() != DType::kFloat32) {
      return node.Invalid("the ratio is not a float scalar");
    }
    p = ratio.values<float>()[0];
  }
  std::vector<std::string> outputs = {node.Output(0)};
  if (node.NumOutputs() > 1 && !node.Output(1).empty()) {
    outputs.push_back(node.Output(1));
  }
  node.Emit(op, {node.Input(0)}, outputs, {{"p", p}});
  return absl::OkStatus();
}

// Mean = mean(x) and InvStdDev = 1/√(var(x) + epsilon) over the normalized
// axes (kept as 1s), as ONNX's LayerNormalization's optional outputs,
// computed beside gradserve's LayerNorm by Mean, Sub, Mul, Add, Sqrt, Div.
void EmitLayerNormStatistics(NodeImport& node, int axis, int rank,
                             double epsilon) {
  Ints axes;
  for (int d = axis; d < rank; ++d) axes.push_back(d);
  const Moments m =
      EmitMoments(node, {{"axes", axes}, {"keepdims", int64_t{1}}},
                  node.OutputUsed(1) ? node.Output(1) : node.Temp("mean"),
                  node.OutputUsed(2));
  if (!node.OutputUsed(2)) return;
  const std::string std = EmitStd(node, m.var, epsilon);
  node.Emit("Div", {FloatConstant(node, "one", 1.0), std}, {node.Output(2)}, {},
            "inv_std");
}

absl::Status LayerNormalization(NodeImport& node, const char* op) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "LayerNormalization"));
  ASSIGN_OR_RETURN(int axis,
                   NormalizeAxis(node, node.Int("axis", -1), rank, "axis"));
  const double epsilon = node.Float("epsilon", 1e-5);
  node.Emit(op, Inputs(node), {node.Output(0)},
            {{"epsilon", epsilon}, {"axes", int64_t{rank - axis}}});
  if (node.OutputUsed(1) || node.OutputUsed(2)) {
    EmitLayerNormStatistics(node, axis, rank, epsilon);
  }
  return absl::OkStatus();
}

// ReduceSum takes its axes as an input from opset 13, the others as an
// attribute until opset 18.
absl::Status Reduce(NodeImport& node, const char* op) {
  Ints axes = node.Ints("axes");
  if (node.HasInput(1)) {
    ASSIGN_OR_RETURN(Tensor t, node.ConstantInput(1, "the axes"));
    axes = IntValues(t);
  }
  if (axes.empty() && node.Int("noop_with_empty_axes", 0) != 0) {
    EmitIdentity(node);
    return absl::OkStatus();
  }
  node.Emit(op, {node.Input(0)}, {node.Output(0)},
            {{"axes", axes}, {"keepdims", node.Int("keepdims", 1)}});
  return absl::OkStatus();
}

// perm, or the dims reversed without it, as gradserve's Permute takes them.
absl::Status Transpose(NodeImport& node, const char*) {
  Ints perm = node.Ints("perm");
  if (perm.empty()) {
    ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "Transpose"));
    for (int d = rank - 1; d >= 0; --d) perm.push_back(d);
  }
  node.Emit("Permute", {node.Input(0)}, {node.Output(0)}, {{"dims", perm}});
  return absl::OkStatus();
}

// --- Elementwise and indexing ----------------------------------------------

// gradserve's float ops take float32 or float64 inputs: an integer one is
// UNIMPLEMENTED naming it (ONNX's integer Clip, Pow, ...).
absl::Status RequireFloat(const NodeImport& node, int i) {
  const int32_t type = node.ElemType(i);
  if (type == 0 || IsFloatType(type)) return absl::OkStatus();
  return node.Unsupported("input '", node.Input(i), "' has element type ",
                          onnx::TensorProto::DataType_Name(type),
                          " (gradserve computes this op in float32 or "
                          "float64)");
}

// One value known at import time, as a double.
absl::StatusOr<double> ScalarInput(const NodeImport& node, int i,
                                   absl::string_view what) {
  ASSIGN_OR_RETURN(Tensor t, node.ConstantInput(i, what));
  if (t.num_elements() != 1) {
    return node.Invalid(what, " holds ", t.num_elements(),
                        " values, expected one");
  }
  return CastFloats(t, onnx::TensorProto::DOUBLE).values<double>()[0];
}

// ONNX's inputs, trailing absent ones dropped, absent ones inside kept as
// "" (gradserve's optional inputs are positional as ONNX's).
std::vector<std::string> PositionalInputs(std::vector<std::string> inputs) {
  while (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
  return inputs;
}

// Clip's bounds: attributes before opset 11 (ONNX's defaults the float
// range), optional inputs from it on: known at import, Clamp's attributes;
// computed at run time, Clamp's tensor inputs.
absl::Status Clip(NodeImport& node, const char* op) {
  RETURN_IF_ERROR(RequireFloat(node, 0));
  AttrMap attrs;
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  if (node.opset() < 11) {
    attrs["min"] = std::vector<double>{node.Float("min", -kFloatMax)};
    attrs["max"] = std::vector<double>{node.Float("max", kFloatMax)};
    node.Emit(op, {node.Input(0)}, {node.Output(0)}, std::move(attrs));
    return absl::OkStatus();
  }
  std::vector<std::string> inputs = {node.Input(0), "", ""};
  for (int i : {1, 2}) {
    if (!node.HasInput(i)) continue;
    const char* bound = i == 1 ? "min" : "max";
    if (!node.IsConstant(i)) {
      RETURN_IF_ERROR(RequireFloat(node, i));
      inputs[i] = node.Input(i);
      continue;
    }
    ASSIGN_OR_RETURN(double value, ScalarInput(node, i, bound));
    attrs[bound] = std::vector<double>{value};
  }
  node.Emit(op, PositionalInputs(std::move(inputs)), {node.Output(0)},
            std::move(attrs));
  return absl::OkStatus();
}

// ONNX's pads (every dim's begin, then every dim's end) as gradserve's
// (torch's: the last dim's (begin, end), then the one before, ...).
Ints TorchPads(const Ints& pads) {
  const size_t rank = pads.size() / 2;
  Ints out;
  for (size_t d = rank; d-- > 0;) {
    out.push_back(pads[d]);
    out.push_back(pads[d + rank]);
  }
  return out;
}

// pads and the constant an attribute before opset 11, inputs known at
// import from it on; modes constant, reflect and edge (replicate).
absl::Status Pad(NodeImport& node, const char*) {
  Ints pads = node.Ints("pads");
  double value = node.Float("value", 0.0);
  if (node.opset() >= 11) {
    ASSIGN_OR_RETURN(Tensor t, node.ConstantInput(1, "the pads"));
    pads = IntValues(t);
    if (node.HasInput(2)) {
      ASSIGN_OR_RETURN(value, ScalarInput(node, 2, "the constant_value"));
    }
  }
  const std::optional<int> rank = node.Rank(0);
  if (pads.size() % 2 != 0 || (rank && pads.size() != 2 * size_t(*rank))) {
    return node.Invalid("pads has ", pads.size(),
                        " values for an input of rank ",
                        rank ? absl::StrCat(*rank) : "unknown");
  }
  std::string mode = node.String("mode", "constant");
  if (mode == "edge") mode = "replicate";
  if (mode != "constant" && mode != "reflect" && mode != "replicate") {
    return node.Unsupported("mode '", mode,
                            "' (gradserve pads constant, "
                            "reflect and edge)");
  }
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) {
    EmitIdentity(node);
    return absl::OkStatus();
  }
  AttrMap attrs = {{"pads", TorchPads(pads)}, {"mode", mode}};
  if (mode == "constant") attrs["value"] = value;
  node.Emit("Pad", {node.Input(0)}, {node.Output(0)}, std::move(attrs));
  return absl::OkStatus();
}

// The chunk sizes: the split attribute (before opset 13) or input (from
// it on), else equal parts, one per output.
absl::StatusOr<Ints> SplitSizes(const NodeImport& node, int axis) {
  Ints sizes = node.Ints("split");
  if (node.opset() >= 13 && node.HasInput(1)) {
    ASSIGN_OR_RETURN(Tensor t, node.ConstantInput(1, "the split"));
    sizes = IntValues(t);
  }
  const int n = node.NumOutputs();
  if (sizes.empty()) {
    ASSIGN_OR_RETURN(Ints dims, DimsOf(node, "Split into equal parts"));
    if (dims[axis] % n != 0) {
      return node.Unsupported("a dim of ", dims[axis], " split into ", n,
                              " equal parts");
    }
    sizes.assign(n, dims[axis] / n);
  }
  if (sizes.size() != static_cast<size_t>(n)) {
    return node.Invalid("split has ", sizes.size(), " sizes for ", n,
                        " outputs");
  }
  return sizes;
}

absl::Status Split(NodeImport& node, const char* op) {
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "Split"));
  ASSIGN_OR_RETURN(int axis,
                   NormalizeAxis(node, node.Int("axis", 0), rank, "axis"));
  ASSIGN_OR_RETURN(Ints sizes, SplitSizes(node, axis));
  std::vector<std::string> outputs;
  for (int j = 0; j < node.NumOutputs(); ++j) {
    outputs.push_back(node.Output(j).empty()
                          ? node.Temp(absl::StrCat("unused_", j))
                          : node.Output(j));
  }
  node.Emit(op, {node.Input(0)}, std::move(outputs),
            {{"split_size_or_sections", sizes}, {"dim", int64_t{axis}}});
  return absl::OkStatus();
}

// Known data and indices fold (shape arithmetic); otherwise IndexSelect
// along axis over the indices seen as a vector, its result viewed with
// ONNX's shape (data's dims around axis, the indices' in its place).
// Negative indices count from the end (wrap_negative).
absl::Status Gather(NodeImport& node, const char* op) {
  if (node.IsConstant(0) && node.IsConstant(1)) return FoldGather(node, op);
  ASSIGN_OR_RETURN(int rank, RankOf(node, 0, "Gather"));
  ASSIGN_OR_RETURN(int axis,
                   NormalizeAxis(node, node.Int("axis", 0), rank, "axis"));
  ASSIGN_OR_RETURN(Ints indices, node.StaticShape(1, "Gather"));
  const AttrMap attrs = {{"dim", int64_t{axis}}, {"wrap_negative", int64_t{1}}};
  if (indices.size() == 1) {  // y is data with axis's dim replaced
    node.Emit("IndexSelect", {node.Input(0), node.Input(1)}, {node.Output(0)},
              attrs);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Ints data, DimsOf(node, "Gather"));
  Ints y(data.begin(), data.begin() + axis);
  y.insert(y.end(), indices.begin(), indices.end());
  y.insert(y.end(), data.begin() + axis + 1, data.end());
  const std::string index = node.Temp("index_vector");
  const std::string selected = node.Temp("selected");
  EmitReshape(node, node.Input(1), index, {ElementCount(indices)},
              "index_vector");
  node.Emit("IndexSelect", {node.Input(0), index}, {selected}, attrs, "select");
  EmitReshape(node, selected, node.Output(0), y, "view");
  return absl::OkStatus();
}

// torch.gather, negative indices counting from the end.
absl::Status GatherElements(NodeImport& node, const char* op) {
  node.Emit(op, {node.Input(0), node.Input(1)}, {node.Output(0)},
            {{"dim", node.Int("axis", 0)}, {"wrap_negative", int64_t{1}}});
  return absl::OkStatus();
}

// X float; an exponent of another type is converted when known at import
// (ONNX allows integer exponents), refused at run time.
absl::Status Pow(NodeImport& node, const char* op) {
  RETURN_IF_ERROR(RequireFloat(node, 0));
  const int32_t type = node.ElemType(0);
  std::string exponent = node.Input(1);
  if (node.ElemType(1) != type) {
    ASSIGN_OR_RETURN(Tensor e, node.ConstantInput(1,
                                                  "an exponent of another "
                                                  "element type"));
    exponent = node.NewConstant("exponent", CastFloats(e, type));
  }
  node.Emit(op, {node.Input(0), exponent}, {node.Output(0)});
  return absl::OkStatus();
}

// SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss over scores
// [N, C, d...] and labels [N, d...], with class weights, ignore_index and
// every reduction, as gradserve's CrossEntropyLoss and NLLLoss take them.
// SoftmaxCrossEntropyLoss's log_prob output, when read, is LogSoftmax of
// the scores along the classes.
absl::Status Loss(NodeImport& node, const char* op) {
  AttrMap attrs = {{"reduction", node.String("reduction", "mean")}};
  // Without ignore_index ONNX ignores no label; gradserve's default (-100)
  // is no label ONNX allows either.
  if (node.Attr("ignore_index") != nullptr) {
    attrs["ignore_index"] = node.Int("ignore_index", -100);
  }
  node.Emit(op, Inputs(node), {node.Output(0)}, std::move(attrs));
  if (node.OutputUsed(1)) {
    node.Emit("LogSoftmax", {node.Input(0)}, {node.Output(1)},
              {{"axis", int64_t{1}}}, "log_prob");
  }
  return absl::OkStatus();
}

const std::vector<OpRow>& Table() {
  static const auto* table = new std::vector<OpRow>{
      {"Add", "Add", nullptr, {}},
      {"Sub", "Sub", nullptr, {}},
      {"Mul", "Mul", nullptr, {}},
      {"Div", "Div", nullptr, {}},
      {"MatMul", "MatMul", nullptr, {}},
      {"Relu", "ReLU", nullptr, {}},
      {"Tanh", "Tanh", nullptr, {}},
      {"Sigmoid", "Sigmoid", nullptr, {}},
      {"Exp", "Exp", nullptr, {}},
      {"Log", "Log", nullptr, {}},
      {"Sqrt", "Sqrt", nullptr, {}},
      {"Abs", "Abs", nullptr, {}},
      {"Neg", "Scale", Neg, {}},
      {"LeakyRelu", "LeakyReLU", nullptr, {{"alpha", "alpha", 0.01}}},
      {"Elu", "ELU", nullptr, {{"alpha", "alpha", 1.0}}},
      {"Gemm", "Linear | MatMul, Scale, Add", Gemm, {}},
      {"Softmax", "Softmax", Softmax, {}},
      {"LogSoftmax", "LogSoftmax", Softmax, {}},
      {"Conv", "Conv1d | Conv2d", Conv, {}},
      // (Pad cropping what asymmetric pads leave over)
      {"ConvTranspose", "ConvTranspose1d | ConvTranspose2d", ConvTranspose, {}},
      {"MaxPool", "MaxPool2d", Pool, {}},
      {"AveragePool", "AvgPool2d", Pool, {}},
      {"GlobalAveragePool", "Mean", GlobalAveragePool, {}},
      {"GlobalMaxPool", "MaxPool2d", GlobalMaxPool, {}},
      // (training_mode with its running statistics read: Mean, Sub, Mul,
      // Add, Sqrt, Div, Reshape, Scale)
      {"BatchNormalization", "BatchNorm", BatchNormalization, {}},
      // (Mean, Sub, Mul, Add, Sqrt, Div for Mean and InvStdDev)
      {"LayerNormalization", "LayerNorm", LayerNormalization, {}},
      {"InstanceNormalization",
       "InstanceNorm1d | InstanceNorm2d | GroupNorm",
       InstanceNormalization,
       {}},
      {"Dropout", "Dropout", Dropout, {}},
      {"Flatten", "Flatten | Reshape", Flatten, {}},
      {"Reshape", "Reshape", Reshape, {}},
      {"Unsqueeze", "Reshape", Unsqueeze, {}},
      {"Squeeze", "Reshape", Squeeze, {}},
      {"Concat", "Concat", Concat, {}},
      {"ReduceMean", "Mean", Reduce, {}},
      {"ReduceSum", "Sum", Reduce, {}},
      {"ReduceMax", "Max", Reduce, {}},
      {"ReduceMin", "Min", Reduce, {}},
      {"Transpose", "Permute", Transpose, {}},
      {"Identity", "Scale", Identity, {}},
      {"Pad", "Pad | Scale", Pad, {}},
      {"Clip", "Clamp", Clip, {}},
      {"Split", "Split", Split, {}},
      {"Where", "Where", nullptr, {}},
      {"Pow", "Pow", Pow, {}},
      {"GatherElements", "Gather", GatherElements, {}},
      {"SoftmaxCrossEntropyLoss", "CrossEntropyLoss", Loss, {}},  // LogSoftmax
      {"NegativeLogLikelihoodLoss", "NLLLoss", Loss, {}},
      {"Constant", "", FoldConstant, {}},
      {"Shape", "", FoldShape, {}},
      {"Gather", "IndexSelect (or folded)", Gather, {}},
      {"Cast", "", Cast, {}},
  };
  return *table;
}

}  // namespace

const OpRow* FindOpRow(absl::string_view onnx_op) {
  for (const OpRow& row : Table()) {
    if (row.onnx_op == onnx_op) return &row;
  }
  return nullptr;
}

}  // namespace gradserve::onnx_import
