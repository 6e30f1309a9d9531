// Summing a tensor over some of its dims: Sum and Mean use it forward, and
// broadcasting ops use it backward to sum dY down to each input's shape.
// Adjacent dims that are both reduced or both kept are merged first, so the
// work is a reduction over alternating [kept, reduced, kept, ...] groups.
// float32 runs oneDNN's reduction primitive; float64, empty tensors and
// more groups than oneDNN takes run one loop.
#ifndef GRADSERVE_CORE_OPS_REDUCTION_H_
#define GRADSERVE_CORE_OPS_REDUCTION_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/dnnl_util.h"
#include "core/tensor.h"

namespace gradserve {

class Reduction {
 public:
  Reduction() = default;
  // `full` is the input's shape; reduced[d] marks the dims summed away.
  Reduction(const Shape& full, const std::vector<bool>& reduced);

  // Input elements per output element (1 when only size-1 dims reduce:
  // then the output is the input's data).
  int64_t count() const { return count_; }
  int64_t input_elements() const { return ElementCount(groups_); }

  // Builds the float32 primitive computing scale · Σ; call once.
  absl::Status Prepare(absl::string_view node, DType dtype, double scale);
  // out = scale · Σ in, with `out` holding count()-fold fewer elements.
  absl::Status Run(absl::string_view node, DnnlRunner& dnnl, const Tensor& in,
                   Tensor& out) const;

  // Calls f(i, o) for every input element i, in order, with o the output
  // element it reduces into.
  template <typename F>
  void ForEachElement(F&& f) const;

 private:
  Shape ReducedGroups() const;

  int64_t count_ = 1;
  double scale_ = 1;
  Shape groups_;  // merged dims of the input, without size-1 dims
  std::vector<bool> group_reduced_;
  std::optional<DnnlPrimitive> primitive_;
};

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
