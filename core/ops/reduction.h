// Summing a tensor over some of its dims: Sum and Mean use it forward, and
// broadcasting ops use it backward to sum dY down to each input's shape.
// Adjacent dims that are both reduced or both kept are merged first, so the
// work is a reduction over alternating [kept, reduced, kept, ...] groups.
//
// Every sum accumulates in double, float32 and float64 alike, in loops that
// read the input in order and vectorise: float32 sums of 2^28 elements stay
// within a few float32 ulps of the exact sum (oneDNN's reduction primitive
// accumulates in float32 and loses most of such a sum).
#ifndef GRADSERVE_CORE_OPS_REDUCTION_H_
#define GRADSERVE_CORE_OPS_REDUCTION_H_

#include <vector>

#include "core/tensor.h"

namespace gradserve {

class Reduction {
 public:
  Reduction() = default;
  // `full` is the input's shape (a valid one); reduced[d] marks the dims
  // summed away.
  Reduction(const Shape& full, const std::vector<bool>& reduced);

  // Input elements per output element (1 when only size-1 dims reduce:
  // then the output is the input's data).
  int64_t count() const { return count_; }

  // out = scale · Σ in, with `out` (float32 or float64, like `in`) holding
  // count()-fold fewer elements.
  void Run(const Tensor& in, Tensor& out, double scale = 1) const;

  // Calls f(i, o) for every input element i, in order, with o the output
  // element it reduces into.
  template <typename F>
  void ForEachElement(F&& f) const;

 private:
  template <typename T>
  void RunTyped(const T* in, T* out, double scale) const;

  int64_t count_ = 1;
  Shape groups_;  // merged dims of the input, without size-1 dims
  std::vector<bool> group_reduced_;
};

// Sums a full-shape gradient down to an input's `shape` with `sum` (a
// Reduction from the full shape to it), times `scale`; a view when nothing
// was broadcast and the scale is 1.
Tensor SumTo(const Reduction& sum, const Tensor& full, const Shape& shape,
             double scale = 1);

template <typename F>
void Reduction::ForEachElement(F&& f) const {
  const int rank = static_cast<int>(groups_.size());
  if (rank == 0) {
    f(0, 0);
    return;
  }
  // Row-major output strides, 0 along reduced groups.
  std::vector<int64_t> strides(rank, 0);
  int64_t stride = 1;
  for (int g = rank - 1; g >= 0; --g) {
    if (group_reduced_[g]) continue;
    strides[g] = stride;
    stride *= groups_[g];
  }
  const int64_t total = ElementCount(groups_);
  const int64_t inner = groups_.back();
  const int64_t inner_stride = strides.back();
  std::vector<int64_t> index(rank, 0);
  int64_t o = 0;
  for (int64_t i = 0; i < total; i += inner) {
    for (int64_t k = 0; k < inner; ++k) f(i + k, o + k * inner_stride);
    for (int g = rank - 2; g >= 0; --g) {
      o += strides[g];
      if (++index[g] < groups_[g]) break;
      o -= strides[g] * groups_[g];
      index[g] = 0;
    }
  }
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_REDUCTION_H_
