#include "core/ops/broadcast.h"

#include <algorithm>

namespace gradserve {

std::optional<Shape> BroadcastShape(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape pa = PadToRank(a, rank), pb = PadToRank(b, rank), out(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (pa[d] != pb[d] && pa[d] != 1 && pb[d] != 1) return std::nullopt;
    out[d] = pa[d] == 1 ? pb[d] : pa[d];
  }
  return out;
}

Shape PadToRank(const Shape& shape, size_t rank) {
  Shape padded(rank - shape.size(), 1);
  padded.insert(padded.end(), shape.begin(), shape.end());
  return padded;
}

std::vector<bool> BroadcastDims(const Shape& shape, const Shape& out) {
  Shape padded = PadToRank(shape, out.size());
  std::vector<bool> dims(out.size());
  for (size_t d = 0; d < out.size(); ++d) dims[d] = padded[d] != out[d];
  return dims;
}

std::vector<int64_t> BroadcastStrides(const Shape& shape, const Shape& out) {
  const Shape padded = PadToRank(shape, out.size());
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    strides[d] = padded[d] == 1 ? 0 : stride;
    stride *= padded[d];
  }
  return strides;
}

}  // namespace gradserve
