// Sliding windows over the spatial dims of x [N, C, spatial...]
// (convolution, pooling): the output extents as PyTorch's floor mode gives
// them, with every intermediate checked; a window's first maximum.
#ifndef GRADSERVE_CORE_OPS_WINDOW_H_
#define GRADSERVE_CORE_OPS_WINDOW_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/op.h"

namespace gradserve {

// One entry per spatial dim. stride, padding and dilation come from
// Attributes::GetIntsInRange (>= 1, >= 0, >= 1, at most kMaxAttrExtent);
// padding is before each dim, padding_end after it (empty: = padding).
struct Window {
  std::vector<int64_t> kernel, stride, padding, dilation, padding_end;
};

// The padding before and after each spatial dim.
struct Padding {
  std::vector<int64_t> begin, end;
};

// Attribute `name`: one int or `spatial` ints (the same before and after
// each dim), or 2·spatial ints (each dim's before, then each dim's after:
// ONNX's pads order), each in [0, kMaxAttrExtent].
absl::StatusOr<Padding> ReadPadding(const Attributes& a, absl::string_view name,
                                    size_t spatial);

// Per spatial dim d of input 0, with span = dilation·(kernel − 1) + 1:
//   (x[2 + d] + padding + padding_end − span) / stride + 1.
// INVALID_ARGUMENT naming the node and the attribute when the dilated
// kernel, the padded input or stride + padding exceed kMaxAttrExtent
// (oneDNN's descriptors compute them in int), and naming input 0 when the
// kernel does not fit into the padded input.
absl::StatusOr<std::vector<int64_t>> WindowOutputDims(const OpConfig& c,
                                                      const Window& w);

// The index of the first maximum among a window's taps (taps(g) calls g(i)
// for each element index i), NaN counting as a maximum, as PyTorch's max
// pooling takes it; -1 for a window without taps.
template <typename T, typename Taps>
int64_t FirstMaxIndex(const T* x, const Taps& taps) {
  int64_t best = -1;
  taps([&](int64_t i) {
    if (best < 0 ||
        (!std::isnan(x[best]) && (x[i] > x[best] || std::isnan(x[i])))) {
      best = i;
    }
  });
  return best;
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_WINDOW_H_
