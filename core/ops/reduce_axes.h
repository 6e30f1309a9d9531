// The `axes` and `keepdims` attributes of reductions (Sum, Mean, Max, Min).
#ifndef GRADSERVE_CORE_OPS_REDUCE_AXES_H_
#define GRADSERVE_CORE_OPS_REDUCE_AXES_H_

#include <algorithm>
#include <vector>

#include "absl/status/statusor.h"
#include "core/op.h"
#include "core/status_macros.h"

namespace gradserve {

// reduced[d] for every dim of input 0 (one dim for a scalar, as in PyTorch,
// which reduces nothing): the dims named in `axes`, or all when it is empty.
inline absl::StatusOr<std::vector<bool>> ReducedAxes(const OpConfig& c) {
  const int rank = static_cast<int>(c.shape(0).size());
  ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.attrs().GetInts("axes"));
  std::vector<bool> reduced(std::max(rank, 1), axes.empty());
  for (int64_t a : axes) {
    ASSIGN_OR_RETURN(int axis, c.NormalizeAxis("axes", a, std::max(rank, 1)));
    if (reduced[axis]) {
      return c.Error("attribute 'axes' names dim ", axis,
                     " more than once, got ", ShapeToString(axes));
    }
    reduced[axis] = true;
  }
  return reduced;
}

// Input 0's shape without the reduced dims, or with them as 1s when the
// `keepdims` attribute is 1.
inline absl::StatusOr<Shape> ReducedShape(const OpConfig& c,
                                          const std::vector<bool>& reduced) {
  const int64_t keepdims = c.attrs().GetInt("keepdims");
  if (keepdims != 0 && keepdims != 1) {
    return c.attrs().Invalid("keepdims", "0 or 1");
  }
  const Shape& x = c.shape(0);
  Shape y;
  for (size_t d = 0; d < x.size(); ++d) {
    if (!reduced[d]) {
      y.push_back(x[d]);
    } else if (keepdims) {
      y.push_back(1);
    }
  }
  return y;
}

// The specs of `axes` and `keepdims`.
inline std::vector<AttrSpec> ReduceAxesAttrs() {
  return {{"axes", AttrType::kInts, AttrValue(std::vector<int64_t>{}),
           "axes to reduce, negative counting from the end; empty = all"},
          {"keepdims", AttrType::kInt, AttrValue(int64_t{0}),
           "1 keeps reduced axes as size-1 dims"}};
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_REDUCE_AXES_H_
