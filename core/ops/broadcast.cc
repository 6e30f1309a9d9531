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

}  // namespace gradserve
