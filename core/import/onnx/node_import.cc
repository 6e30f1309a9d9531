#include "core/import/onnx/node_import.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/status_macros.h"

namespace gradserve::onnx_import {
namespace {

using onnx::TensorProto;

bool IsIntegerType(int32_t type) {
  switch (type) {
    case TensorProto::INT64:
    case TensorProto::INT32:
    case TensorProto::INT16:
    case TensorProto::INT8:
    case TensorProto::UINT16:
    case TensorProto::UINT8:
    case TensorProto::BOOL:
      return true;
    default:
      return false;
  }
}

// Little-endian raw bytes of `size`-byte signed (or unsigned) integers.
int64_t ReadRawInt(const char* p, size_t size, bool is_signed) {
  uint64_t bits = 0;
  std::memcpy(&bits, p, size);
  if (is_signed && size < 8 && (bits >> (8 * size - 1)) != 0) {
    bits |= ~uint64_t{0} << (8 * size);
  }
  return static_cast<int64_t>(bits);
}

size_t RawSize(int32_t type) {
  switch (type) {
    case TensorProto::INT64:
      return 8;
    case TensorProto::FLOAT:
    case TensorProto::INT32:
      return 4;
    case TensorProto::INT16:
    case TensorProto::UINT16:
      return 2;
    default:
      return 1;
  }
}

absl::Status CountMismatch(absl::string_view what, int64_t expected,
                           int64_t given, absl::string_view field) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": its dims hold ",
                                                 expected, " elements but ",
                                                 field, " carries ", given));
}

// float32 (T = float, float_data) or float64 (double, double_data).
template <typename T, typename Values>
absl::StatusOr<Tensor> FloatingTensor(const TensorProto& p, Shape shape,
                                      int64_t n, absl::string_view what,
                                      const Values& values,
                                      absl::string_view field) {
  constexpr int64_t kSize = sizeof(T);
  Tensor t = Tensor::Empty(kSize == 4 ? DType::kFloat32 : DType::kFloat64,
                           std::move(shape));
  if (p.has_raw_data()) {
    if (p.raw_data().size() != static_cast<size_t>(n * kSize)) {
      return CountMismatch(what, n * kSize, p.raw_data().size(),
                           "raw_data bytes");
    }
    if (n > 0) std::memcpy(t.raw_data(), p.raw_data().data(), n * kSize);
    return t;
  }
  if (values.size() != n) return CountMismatch(what, n, values.size(), field);
  for (int64_t i = 0; i < n; ++i) t.data<T>()[i] = values.Get(i);
  return t;
}

absl::StatusOr<Tensor> IntTensor(const TensorProto& p, Shape shape, int64_t n,
                                 absl::string_view what) {
  Tensor t = Tensor::Empty(DType::kInt64, std::move(shape));
  int64_t* out = t.data<int64_t>();
  const int32_t type = p.data_type();
  if (p.has_raw_data()) {
    const size_t size = RawSize(type);
    if (p.raw_data().size() != static_cast<size_t>(n) * size) {
      return CountMismatch(what, n * size, p.raw_data().size(),
                           "raw_data bytes");
    }
    const bool is_signed = type != TensorProto::UINT8 &&
                           type != TensorProto::UINT16 &&
                           type != TensorProto::BOOL;
    for (int64_t i = 0; i < n; ++i) {
      out[i] = ReadRawInt(p.raw_data().data() + i * size, size, is_signed);
    }
    return t;
  }
  if (type == TensorProto::INT64) {
    if (p.int64_data_size() != n) {
      return CountMismatch(what, n, p.int64_data_size(), "int64_data");
    }
    for (int64_t i = 0; i < n; ++i) out[i] = p.int64_data(i);
    return t;
  }
  if (p.int32_data_size() != n) {
    return CountMismatch(what, n, p.int32_data_size(), "int32_data");
  }
  for (int64_t i = 0; i < n; ++i) out[i] = p.int32_data(i);
  return t;
}

void SetKnown(ValueInfo& info, Tensor value) {
  info.dims = value.shape();
  info.elem_type = value.dtype() == DType::kInt64     ? TensorProto::INT64
                   : value.dtype() == DType::kFloat64 ? TensorProto::DOUBLE
                                                      : TensorProto::FLOAT;
  info.constant = std::move(value);
}

}  // namespace

absl::Status ExternalDataError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      what,
      " keeps its data in an external file; gradserve takes models whose "
      "tensors are inside the model (save it without external data)"));
}

absl::StatusOr<Tensor> TensorFromProto(const TensorProto& proto,
                                       absl::string_view what,
                                       const Limits& limits) {
  if (proto.data_location() == TensorProto::EXTERNAL) {
    return ExternalDataError(what);
  }
  if (proto.has_segment()) {
    return absl::UnimplementedError(
        absl::StrCat(what, " is a segment of a tensor; not supported"));
  }
  Shape shape(proto.dims().begin(), proto.dims().end());
  ASSIGN_OR_RETURN(
      const int64_t n,
      CheckedElementCount(shape, limits.max_tensor_elements, what));
  const int32_t type = proto.data_type();
  if (type == TensorProto::FLOAT) {
    return FloatingTensor<float>(proto, std::move(shape), n, what,
                                 proto.float_data(), "float_data");
  }
  if (type == TensorProto::DOUBLE) {
    return FloatingTensor<double>(proto, std::move(shape), n, what,
                                  proto.double_data(), "double_data");
  }
  if (IsIntegerType(type)) return IntTensor(proto, std::move(shape), n, what);
  return absl::UnimplementedError(
      absl::StrCat(what, " has element type ", TensorProto::DataType_Name(type),
                   "; gradserve imports float32, float64 and integer "
                   "tensors"));
}

std::string GraphImport::UniqueValue(absl::string_view base) {
  std::string name(base);
  for (int i = 2; !value_names.insert(name).second; ++i) {
    name = absl::StrCat(base, "_", i);
  }
  return name;
}

std::string GraphImport::UniqueNode(absl::string_view base) {
  std::string name(base);
  for (int i = 2; !node_names.insert(name).second; ++i) {
    name = absl::StrCat(base, "_", i);
  }
  return name;
}

const onnx::AttributeProto* NodeImport::Attr(absl::string_view name) const {
  for (const auto& a : node_.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t NodeImport::Int(absl::string_view name, int64_t fallback) const {
  const auto* a = Attr(name);
  return a == nullptr ? fallback : a->i();
}

// ONNX keeps float attributes in float32: read them as the shortest decimal
// that rounds to that float (0.9f as 0.9), the value the exporter was given.
double NodeImport::Float(absl::string_view name, double fallback) const {
  const auto* a = Attr(name);
  if (a == nullptr) return fallback;
  const float f = a->f();
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, f);
    if (std::strtof(text, nullptr) == f) return std::strtod(text, nullptr);
  }
  return f;
}

std::vector<int64_t> NodeImport::Ints(absl::string_view name,
                                      std::vector<int64_t> fallback) const {
  const auto* a = Attr(name);
  if (a == nullptr) return fallback;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

std::string NodeImport::String(absl::string_view name,
                               std::string fallback) const {
  const auto* a = Attr(name);
  return a == nullptr ? fallback : a->s();
}

bool NodeImport::HasInput(int i) const {
  return i < NumInputs() && !Input(i).empty();
}

const ValueInfo* NodeImport::Info(int i) const {
  if (!HasInput(i)) return nullptr;
  auto it = graph_.values.find(Input(i));
  return it == graph_.values.end() ? nullptr : &it->second;
}

bool NodeImport::IsConstant(int i) const {
  const ValueInfo* info = Info(i);
  return info != nullptr && info->constant.has_value();
}

absl::StatusOr<Tensor> NodeImport::ConstantInput(int i,
                                                 absl::string_view what) const {
  if (!HasInput(i)) return Invalid("input ", i, " (", what, ") is missing");
  if (!IsConstant(i)) {
    return Unsupported("input '", Input(i), "' (", what,
                       ") is computed at run time; gradserve needs it known "
                       "when the model is imported (an initializer or a "
                       "Constant)");
  }
  return *Info(i)->constant;
}

absl::StatusOr<Shape> NodeImport::StaticShape(int i,
                                              absl::string_view why) const {
  const ValueInfo* info = Info(i);
  if (info != nullptr && info->dims.has_value()) {
    bool known = true;
    for (int64_t d : *info->dims) known = known && d >= 0;
    if (known) return *info->dims;
  }
  return Unsupported("the shape of input '", HasInput(i) ? Input(i) : "",
                     "' is not known when the model is imported (", why,
                     " needs it); export the model with static shapes");
}

std::optional<int> NodeImport::Rank(int i) const {
  const ValueInfo* info = Info(i);
  if (info == nullptr || !info->dims.has_value()) return std::nullopt;
  return static_cast<int>(info->dims->size());
}

int32_t NodeImport::ElemType(int i) const {
  const ValueInfo* info = Info(i);
  return info == nullptr ? 0 : info->elem_type;
}

bool NodeImport::OutputUsed(int j) const {
  return j < NumOutputs() && !Output(j).empty() &&
         graph_.read.contains(Output(j));
}

std::optional<std::vector<int64_t>> NodeImport::OutputDims(int j) const {
  if (j >= NumOutputs() || Output(j).empty()) return std::nullopt;
  auto it = graph_.values.find(Output(j));
  if (it == graph_.values.end()) return std::nullopt;
  return it->second.dims;
}

absl::Status NodeImport::RejectUsedOutputs(int first,
                                           absl::string_view what) const {
  for (int j = first; j < NumOutputs(); ++j) {
    if (OutputUsed(j)) {
      return Unsupported("output '", Output(j), "' (", what,
                         ") is read by the model; gradserve does not compute "
                         "it yet");
    }
  }
  return absl::OkStatus();
}

void NodeImport::Emit(std::string op, std::vector<std::string> inputs,
                      std::vector<std::string> outputs, AttrMap attrs,
                      absl::string_view suffix) {
  // The first node takes the ONNX node's name, the others a suffixed one.
  if (emitted_++ > 0 && suffix.empty()) suffix = op;
  NodeDef def;
  def.name = suffix.empty()
                 ? name_
                 : graph_.UniqueNode(absl::StrCat(name_, "/", suffix));
  def.op = std::move(op);
  def.inputs = std::move(inputs);
  def.outputs = std::move(outputs);
  def.attributes = std::move(attrs);
  graph_.graph.nodes.push_back(std::move(def));
}

std::string NodeImport::Temp(absl::string_view suffix) {
  return graph_.UniqueValue(absl::StrCat(name_, "/", suffix));
}

std::string NodeImport::NewConstant(absl::string_view suffix, Tensor value) {
  std::string name = Temp(suffix);
  SetKnown(graph_.values[name], std::move(value));
  return name;
}

void NodeImport::SetConstant(int j, Tensor value) {
  SetKnown(graph_.values[Output(j)], std::move(value));
}

std::string NodeImport::Label() const {
  return absl::StrCat("ONNX node '", name_, "' (", node_.op_type(), ", opset ",
                      opset_, "): ");
}

absl::Status ImportNode(const OpRow& row, NodeImport& node) {
  if (row.handler != nullptr) return row.handler(node, row.gradserve_op);
  RETURN_IF_ERROR(node.RejectUsedOutputs(1, "a second output"));
  AttrMap attrs;
  for (const FloatAttrMapping& m : row.float_attrs) {
    attrs[m.gradserve_name] = node.Float(m.onnx_name, m.onnx_default);
  }
  std::vector<std::string> inputs(node.proto().input().begin(),
                                  node.proto().input().end());
  node.Emit(row.gradserve_op, std::move(inputs), {node.Output(0)},
            std::move(attrs));
  return absl::OkStatus();
}

}  // namespace gradserve::onnx_import
