// Shapes split around an axis, for ops that work along one (Softmax,
// Concat, Split), and block copies along it.
#ifndef GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_
#define GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/types/span.h"
#include "core/tensor.h"

namespace gradserve {

// A row-major shape seen as [outer, dim, inner] around one axis: element
// (o, k, i) lies at (o * dim + k) * inner + i.
struct AxisSplit {
  int64_t outer = 1;
  int64_t dim = 1;
  int64_t inner = 1;
};

// The split of `shape` around `axis`; a scalar is [1, 1, 1].
inline AxisSplit SplitAtAxis(const Shape& shape, int axis) {
  if (shape.empty()) return AxisSplit{};
  absl::Span<const int64_t> dims(shape);
  return AxisSplit{ElementCount(dims.first(axis)), shape[axis],
                   ElementCount(dims.subspan(axis + 1))};
}

// Copies `count` blocks of `block` bytes; consecutive blocks lie `src_pitch`
// bytes apart in src and `dst_pitch` bytes apart in dst.
inline void CopyBlocks(int64_t count, size_t block, const uint8_t* src,
                       size_t src_pitch, uint8_t* dst, size_t dst_pitch) {
  if (block == 0) return;
  for (int64_t b = 0; b < count; ++b) {
    std::memcpy(dst + b * dst_pitch, src + b * src_pitch, block);
  }
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_
