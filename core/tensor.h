// Dense row-major tensors with shared, 64-byte-aligned storage.
#ifndef GRADSERVE_CORE_TENSOR_H_
#define GRADSERVE_CORE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/checked_math.h"

namespace gradserve {

// Element types. kFloat64 exists for the double-precision reference path
// (gradient checks); the wire carries float32, int64 and bfloat16.
enum class DType : uint8_t { kFloat32, kFloat64, kInt64 };

size_t DTypeSize(DType dtype);
absl::string_view DTypeName(DType dtype);
inline bool IsFloating(DType dtype) { return dtype != DType::kInt64; }

template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType DTypeOf<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType DTypeOf<int64_t>() {
  return DType::kInt64;
}

using Shape = std::vector<int64_t>;

// "[2, 3]"; a scalar is "[]".
std::string ShapeToString(absl::Span<const int64_t> shape);

// The most elements a tensor may have whatever the configured limit, so that
// byte sizes (at most 8 bytes an element) and sums of a few of them stay far
// inside int64.
constexpr int64_t kMaxTensorElements = int64_t{1} << 56;

// The product of the dims, checked for every tensor the planner sees (inputs
// and every inferred output): INVALID_ARGUMENT when any dim is negative,
// RESOURCE_EXHAUSTED when the product of the non-zero dims exceeds `limit`
// (or kMaxTensorElements). An empty tensor's other dims are bounded too, so
// every dim, and every product of dims, of an accepted shape fits in int64
// with room to spare. `what` names the tensor.
absl::StatusOr<int64_t> CheckedElementCount(absl::Span<const int64_t> shape,
                                            int64_t limit,
                                            absl::string_view what);

// The product of the dims, saturating at INT64_MAX: exact for every shape
// CheckedElementCount accepts (and for its sub-shapes).
int64_t ElementCount(absl::Span<const int64_t> shape);

// Dtype and shape of a value, known before it is computed.
struct TensorMeta {
  DType dtype = DType::kFloat32;
  Shape shape;

  int64_t num_elements() const { return ElementCount(shape); }
  int64_t num_bytes() const {
    return MulSat(num_elements(), static_cast<int64_t>(DTypeSize(dtype)));
  }
  std::string ToString() const;  // "float32 [2, 3]"
  bool operator==(const TensorMeta& o) const {
    return dtype == o.dtype && shape == o.shape;
  }
  bool operator!=(const TensorMeta& o) const { return !(*this == o); }
};

// The physical layout of a tensor that is not plain row-major: a oneDNN
// memory descriptor (blocked formats such as nChw16c). Defined in
// core/dnnl_util.h; most code only sees plain tensors.
struct Layout;

// A tensor. Copies share storage; ops write only into tensors they allocate.
// Its shape is always the logical one; a tensor with a layout() keeps its
// elements in that layout (ops that declare Op::HandlesLayouts() see such
// tensors; the executor gives every other op plain ones).
class Tensor {
 public:
  Tensor() = default;

  // Uninitialised storage for `shape`; the caller has checked its size.
  static Tensor Empty(DType dtype, Shape shape);
  static Tensor Zeros(DType dtype, Shape shape);
  static Tensor Empty(const TensorMeta& meta) {
    return Empty(meta.dtype, meta.shape);
  }
  static Tensor Zeros(const TensorMeta& meta) {
    return Zeros(meta.dtype, meta.shape);
  }
  // Uninitialised storage of `bytes` (at least the plain size) for `meta`
  // in `layout`.
  static Tensor EmptyWithLayout(const TensorMeta& meta,
                                std::shared_ptr<const Layout> layout,
                                size_t bytes);
  // A tensor over `data`, which `owner` keeps alive (a received message's
  // buffer), not copied; the caller has checked that it holds exactly
  // `shape`'s elements.
  static Tensor Adopt(DType dtype, Shape shape, std::shared_ptr<void> owner,
                      void* data);
  template <typename T>
  static Tensor FromValues(Shape shape, absl::Span<const T> values);
  template <typename T>
  static Tensor Scalar(T value) {
    return FromValues<T>({}, absl::MakeConstSpan(&value, 1));
  }

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t num_elements() const { return numel_; }
  size_t num_bytes() const {
    return static_cast<size_t>(numel_) * DTypeSize(dtype_);
  }
  // The bytes the storage holds: num_bytes(), or more for a padded layout.
  size_t storage_bytes() const { return storage_bytes_; }
  const std::shared_ptr<const Layout>& layout() const { return layout_; }
  bool is_plain() const { return layout_ == nullptr; }
  TensorMeta meta() const { return {dtype_, shape_}; }

  void* raw_data() { return storage_.get(); }
  const void* raw_data() const { return storage_.get(); }
  template <typename T>
  T* data() {
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(raw_data());
  }
  template <typename T>
  absl::Span<const T> values() const {
    return absl::MakeConstSpan(data<T>(), static_cast<size_t>(numel_));
  }
  template <typename T>
  absl::Span<T> mutable_values() {
    return absl::MakeSpan(data<T>(), static_cast<size_t>(numel_));
  }

  // The same storage seen with another shape of equal element count (plain
  // tensors only).
  Tensor Reshaped(Shape shape) const;
  // A copy with its own storage.
  Tensor Clone() const;
  // The same storage described by another layout (null: plain).
  Tensor WithLayout(std::shared_ptr<const Layout> layout) const;
  // Float tensors converted to `dtype` (float32 <-> float64); others shared.
  Tensor CastFloat(DType dtype) const;
  // Converted to the floating `dtype`: float tensors as CastFloat, int64
  // ones value by value (torch's promotion of an int64 operand).
  Tensor ToFloating(DType dtype) const;
  // True when no other Tensor shares this storage, so it may be written.
  bool unique() const { return storage_.use_count() == 1; }

 private:
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t numel_ = 0;
  size_t storage_bytes_ = 0;
  std::shared_ptr<uint8_t> storage_;
  std::shared_ptr<const Layout> layout_;
};

template <typename T>
Tensor Tensor::FromValues(Shape shape, absl::Span<const T> values) {
  Tensor t = Empty(DTypeOf<T>(), std::move(shape));
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

// Named tensors (feeds, gradients, ...).
using TensorMap = absl::flat_hash_map<std::string, Tensor>;

}  // namespace gradserve

#endif  // GRADSERVE_CORE_TENSOR_H_
