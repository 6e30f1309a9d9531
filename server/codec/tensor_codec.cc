#include "server/codec/tensor_codec.h"

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
    case pb::DATA_TYPE_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

DType CoreType(pb::DataType dtype) {
  if (dtype == pb::DATA_TYPE_INT64) return DType::kInt64;
  return dtype == pb::DATA_TYPE_FLOAT64 ? DType::kFloat64 : DType::kFloat32;
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

}  // namespace

std::string Keyed(absl::string_view field, absl::string_view key) {
  return absl::StrCat(field, "['", key, "']");
}

absl::StatusOr<int64_t> CheckTensor(const pb::Tensor& t, absl::string_view what,
                                    const Limits& limits) {
  TensorHeader header;
  header.dtype = t.dtype();
  header.shape.assign(t.shape().begin(), t.shape().end());
  header.data_bytes = static_cast<int64_t>(t.data().size());
  header.float_values = t.float_values_size();
  header.int64_values = t.int64_values_size();
  if (t.has_shared_memory()) header.shared_memory = &t.shared_memory();
  return CheckTensorHeader(header, what, limits);
}

absl::StatusOr<int64_t> CheckTensorHeader(const TensorHeader& t,
                                          absl::string_view what,
                                          const Limits& limits) {
  const int64_t size = WireSize(t.dtype);
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": dtype must be DATA_TYPE_FLOAT32, DATA_TYPE_INT64, "
        "DATA_TYPE_BFLOAT16 or DATA_TYPE_FLOAT64, got ",
        pb::DataType_Name(t.dtype).empty() ? absl::StrCat(t.dtype)
                                           : pb::DataType_Name(t.dtype)));
  }
  const Shape& shape = t.shape;
  ASSIGN_OR_RETURN(int64_t count, CheckedElementCount(
                                      shape, limits.max_tensor_elements, what));
  const std::string type =
      absl::StrCat(pb::DataType_Name(t.dtype), " ", ShapeToString(shape));
  const int carriers = (t.data_bytes > 0) + (t.float_values > 0) +
                       (t.int64_values > 0) + (t.shared_memory != nullptr);
  if (carriers > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": exactly one of data, float_values, int64_values, shared_memory "
        "may carry the values, got ",
        carriers));
  }
  if (t.shared_memory != nullptr) {
    const uint64_t given = t.shared_memory->byte_size();
    if (given != static_cast<uint64_t>(count * size)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shared_memory.byte_size is ", given,
                       " (region '", t.shared_memory->region(), "'), expected ",
                       count * size, " for ", type));
    }
  } else if (t.float_values > 0) {
    if (t.dtype == pb::DATA_TYPE_INT64) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": float_values given for an int64 tensor (use int64_values)"));
    }
    if (t.float_values != count) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": float_values has ", t.float_values,
                       " values, expected ", count, " for ", type));
    }
  } else if (t.int64_values > 0) {
    if (t.dtype != pb::DATA_TYPE_INT64) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": int64_values given for a ", pb::DataType_Name(t.dtype),
          " tensor (use float_values or data)"));
    }
    if (t.int64_values != count) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": int64_values has ", t.int64_values,
                       " values, expected ", count, " for ", type));
    }
  } else if (t.data_bytes != count * size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": data has ", t.data_bytes, " bytes, expected ",
                     count * size, " for ", type));
  }
  return count * static_cast<int64_t>(DTypeSize(CoreType(t.dtype)));
}

absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t,
                                       absl::string_view what,
                                       const Limits& limits) {
  RETURN_IF_ERROR(CheckTensor(t, what, limits).status());
  if (t.has_shared_memory()) {  // requests read theirs first
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": a shared_memory carrier is not accepted here; send data"));
  }
  Tensor out = Tensor::Empty(CoreType(t.dtype()),
                             Shape(t.shape().begin(), t.shape().end()));
  const int64_t n = out.num_elements();
  if (t.float_values_size() > 0 && out.dtype() == DType::kFloat64) {
    std::copy(t.float_values().begin(), t.float_values().end(),
              out.data<double>());
  } else if (t.float_values_size() > 0) {
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

absl::StatusOr<Tensor> TakeTensorFromProto(pb::Tensor* t,
                                           absl::string_view what,
                                           const Limits& limits) {
  const bool raw = t->float_values_size() == 0 && t->int64_values_size() == 0 &&
                   t->dtype() != pb::DATA_TYPE_BFLOAT16;
  if (!raw || t->data().empty()) return TensorFromProto(*t, what, limits);
  RETURN_IF_ERROR(CheckTensor(*t, what, limits).status());
  auto bytes = std::make_shared<std::string>();
  bytes->swap(*t->mutable_data());
  void* data = bytes->data();
  return Tensor::Adopt(CoreType(t->dtype()),
                       Shape(t->shape().begin(), t->shape().end()),
                       std::move(bytes), data);
}

pb::DataType WireDataType(DType dtype) {
  switch (dtype) {
    case DType::kInt64:
      return pb::DATA_TYPE_INT64;
    case DType::kFloat64:
      return pb::DATA_TYPE_FLOAT64;
    default:
      return pb::DATA_TYPE_FLOAT32;
  }
}

void TensorToProto(const Tensor& t, pb::Tensor* out) {
  // float32, int64, or float64 from a request that runs in float64.
  const Tensor& wire = t;
  out->set_dtype(WireDataType(wire.dtype()));
  out->mutable_shape()->Assign(wire.shape().begin(), wire.shape().end());
  out->set_data(wire.raw_data(), wire.num_bytes());
}

absl::Status TensorBatch::Check(const TensorProtoMap& map,
                                absl::string_view field) {
  for (const auto& [name, t] : map) {
    RETURN_IF_ERROR(Check(t, Keyed(field, name)));
  }
  return absl::OkStatus();
}

absl::Status TensorBatch::Check(const pb::Tensor& t, absl::string_view what) {
  ASSIGN_OR_RETURN(int64_t b, CheckTensor(t, what, limits_));
  bytes_ = SaturatingAdd(bytes_, b);
  return absl::OkStatus();
}

absl::Status TensorBatch::CheckTotal() const {
  if (bytes_ <= limits_.max_request_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the request's tensors take ", bytes_,
                   " bytes, over the limit of ", limits_.max_request_bytes));
}

void TensorsToProto(const std::map<std::string, Tensor>& tensors,
                    TensorProtoMap* out) {
  for (const auto& [name, t] : tensors) TensorToProto(t, &(*out)[name]);
}

}  // namespace gradserve::server
