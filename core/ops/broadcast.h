// NumPy broadcasting: shapes, and a loop over the pairs of elements that
// broadcast together.
#ifndef GRADSERVE_CORE_OPS_BROADCAST_H_
#define GRADSERVE_CORE_OPS_BROADCAST_H_

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace gradserve {

// The broadcast of two shapes (aligned right; each dim equal or 1), or
// nullopt when they do not broadcast.
std::optional<Shape> BroadcastShape(const Shape& a, const Shape& b);

// `shape` with leading 1s up to `rank` dims.
Shape PadToRank(const Shape& shape, size_t rank);

// The dims of `out` along which a tensor of `shape` (aligned right) is
// repeated: where it has no dim or a 1 against a larger dim.
std::vector<bool> BroadcastDims(const Shape& shape, const Shape& out);

// Calls f(o, ia, ib) for every element o of `out`, with ia and ib the
// elements of a and b that broadcast to it.
template <typename F>
void ForEachBroadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const int rank = static_cast<int>(out.size());
  const int64_t total = ElementCount(out);
  if (total == 0) return;
  if (rank == 0) {
    f(0, 0, 0);
    return;
  }
  auto strides = [&](const Shape& s) {
    Shape padded = PadToRank(s, rank);
    std::vector<int64_t> st(rank, 0);
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      st[d] = padded[d] == 1 ? 0 : stride;
      stride *= padded[d];
    }
    return st;
  };
  const std::vector<int64_t> sa = strides(a), sb = strides(b);
  const int64_t inner = out.back();
  std::vector<int64_t> index(rank, 0);
  int64_t ia = 0, ib = 0;
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t k = 0; k < inner; ++k) {
      f(o + k, ia + k * sa.back(), ib + k * sb.back());
    }
    for (int d = rank - 2; d >= 0; --d) {
      ia += sa[d];
      ib += sb[d];
      if (++index[d] < out[d]) break;
      ia -= sa[d] * out[d];
      ib -= sb[d] * out[d];
      index[d] = 0;
    }
  }
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_BROADCAST_H_
