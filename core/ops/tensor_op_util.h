// Helpers shared by the tensor ops (MatMul, Softmax, Sum/Mean, Concat):
// shapes split around an axis, and running a primitive under CatchDnnl.
#ifndef GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_
#define GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_

#include <cstdint>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/dnnl_util.h"
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

// Whether a value of this meta runs on oneDNN: float32 and not empty (the
// reference loops serve float64 and empty shapes).
inline bool RunsOnDnnl(const TensorMeta& meta) {
  return meta.dtype == DType::kFloat32 && meta.num_elements() > 0;
}

// Executes `p` on the runner; a dnnl::error becomes a status naming `node`.
inline absl::Status ExecuteDnnl(DnnlRunner& runner, absl::string_view node,
                                const DnnlPrimitive& p,
                                std::unordered_map<int, dnnl::memory> args) {
  return CatchDnnl(node, [&] {
    runner.Execute(p, std::move(args));
    return absl::OkStatus();
  });
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_TENSOR_OP_UTIL_H_
