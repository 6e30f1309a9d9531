// NumPy broadcasting: shapes, and a loop over the pairs of elements that
// broadcast together.
#ifndef GRADSERVE_CORE_OPS_BROADCAST_H_
#define GRADSERVE_CORE_OPS_BROADCAST_H_

#include <array>
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

// Row-major element strides of a tensor of `shape` (aligned right) read as
// one of `out`'s shape: 0 along the dims it is broadcast along.
std::vector<int64_t> BroadcastStrides(const Shape& shape, const Shape& out);

// Calls f(o, idx) for every element o of `out`, with idx[k] the element of
// the tensor of shapes[k] that broadcasts to it.
template <size_t N, typename F>
void ForEachBroadcastN(const Shape& out, const std::array<Shape, N>& shapes,
                       F&& f) {
  const int rank = static_cast<int>(out.size());
  const int64_t total = ElementCount(out);
  std::array<int64_t, N> idx{};
  if (total == 0) return;
  if (rank == 0) {
    f(int64_t{0}, idx);
    return;
  }
  std::array<std::vector<int64_t>, N> strides;
  for (size_t k = 0; k < N; ++k) strides[k] = BroadcastStrides(shapes[k], out);
  const int64_t inner = out.back();
  std::vector<int64_t> index(rank, 0);
  std::array<int64_t, N> base{};
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t j = 0; j < inner; ++j) {
      for (size_t k = 0; k < N; ++k) idx[k] = base[k] + j * strides[k].back();
      f(o + j, idx);
    }
    for (int d = rank - 2; d >= 0; --d) {
      for (size_t k = 0; k < N; ++k) base[k] += strides[k][d];
      if (++index[d] < out[d]) break;
      for (size_t k = 0; k < N; ++k) base[k] -= strides[k][d] * out[d];
      index[d] = 0;
    }
  }
}

// Calls f(o, ia, ib) for every element o of `out`, with ia and ib the
// elements of a and b that broadcast to it.
template <typename F>
void ForEachBroadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  ForEachBroadcastN<2>(out, {a, b},
                       [&](int64_t o, const std::array<int64_t, 2>& idx) {
                         f(o, idx[0], idx[1]);
                       });
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_BROADCAST_H_
