#include "core/tensor.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gradserve {
namespace {

constexpr std::align_val_t kAlignment{64};

std::shared_ptr<uint8_t> Allocate(size_t bytes) {
  // At least one byte, so that an empty tensor still has storage.
  auto* p = static_cast<uint8_t*>(
      ::operator new(std::max<size_t>(bytes, 1), kAlignment));
  return std::shared_ptr<uint8_t>(
      p, [](uint8_t* q) { ::operator delete(q, kAlignment); });
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt64:
      return "int64";
  }
  return "unknown";
}

std::string ShapeToString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<int64_t> CheckedElementCount(absl::Span<const int64_t> shape,
                                            int64_t limit,
                                            absl::string_view what) {
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": dimensions must be >= 0, got shape ", ShapeToString(shape)));
    }
  }
  limit = std::min(limit, kMaxTensorElements);
  // The product of the non-zero dims stays within the limit also for an
  // empty tensor, whose other dims must not overflow what is derived from
  // them (a Flatten, a Concat).
  bool empty = false;
  int64_t nonzero = 1;
  for (int64_t d : shape) {
    empty = empty || d == 0;
    if (d > 0) nonzero = MulSat(nonzero, d);
  }
  if (nonzero > limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": shape ", ShapeToString(shape), " has more elements",
        empty ? " in its non-zero dims" : "", " than the limit of ", limit,
        empty ? " (the dims of an empty tensor are bounded too)" : ""));
  }
  return empty ? 0 : nonzero;
}

int64_t ElementCount(absl::Span<const int64_t> shape) {
  return CheckedProduct(shape).value_or(std::numeric_limits<int64_t>::max());
}

std::string TensorMeta::ToString() const {
  return absl::StrCat(DTypeName(dtype), " ", ShapeToString(shape));
}

Tensor Tensor::Empty(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ElementCount(shape);
  t.shape_ = std::move(shape);
  t.storage_bytes_ = t.num_bytes();
  t.storage_ = Allocate(t.storage_bytes_);
  return t;
}

Tensor Tensor::Adopt(DType dtype, Shape shape, std::shared_ptr<void> owner,
                     void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ElementCount(shape);
  t.shape_ = std::move(shape);
  t.storage_bytes_ = t.num_bytes();
  t.storage_ =
      std::shared_ptr<uint8_t>(std::move(owner), static_cast<uint8_t*>(data));
  return t;
}

Tensor Tensor::EmptyWithLayout(const TensorMeta& meta,
                               std::shared_ptr<const Layout> layout,
                               size_t bytes) {
  Tensor t;
  t.dtype_ = meta.dtype;
  t.shape_ = meta.shape;
  t.numel_ = ElementCount(meta.shape);
  t.storage_bytes_ = std::max(bytes, t.num_bytes());
  t.storage_ = Allocate(t.storage_bytes_);
  t.layout_ = std::move(layout);
  return t;
}

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t = Empty(dtype, std::move(shape));
  std::memset(t.raw_data(), 0, t.num_bytes());
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = EmptyWithLayout(meta(), layout_, storage_bytes_);
  std::memcpy(t.raw_data(), raw_data(), storage_bytes_);
  return t;
}

Tensor Tensor::WithLayout(std::shared_ptr<const Layout> layout) const {
  Tensor t = *this;
  t.layout_ = std::move(layout);
  return t;
}

Tensor Tensor::ToFloating(DType dtype) const {
  if (IsFloating(dtype_) || !IsFloating(dtype)) return CastFloat(dtype);
  Tensor t = Empty(dtype, shape_);
  const int64_t* from = data<int64_t>();
  if (dtype == DType::kFloat64) {
    std::transform(from, from + numel_, t.data<double>(),
                   [](int64_t v) { return static_cast<double>(v); });
  } else {
    std::transform(from, from + numel_, t.data<float>(),
                   [](int64_t v) { return static_cast<float>(v); });
  }
  return t;
}

Tensor Tensor::CastFloat(DType dtype) const {
  if (dtype == dtype_ || !IsFloating(dtype_) || !IsFloating(dtype)) {
    return *this;
  }
  Tensor t = Empty(dtype, shape_);
  if (dtype == DType::kFloat64) {
    std::copy_n(data<float>(), numel_, t.data<double>());
  } else {
    std::transform(data<double>(), data<double>() + numel_, t.data<float>(),
                   [](double v) { return static_cast<float>(v); });
  }
  return t;
}

}  // namespace gradserve
