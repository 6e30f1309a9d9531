#include "core/ops/reduction.h"

#include <algorithm>

#include "core/ops/op_util.h"

namespace gradserve {

Reduction::Reduction(const Shape& full, const std::vector<bool>& reduced) {
  for (size_t d = 0; d < full.size(); ++d) {
    if (reduced[d]) count_ *= full[d];
    if (full[d] == 1) continue;  // a size-1 dim joins either kind of group
    if (!groups_.empty() && group_reduced_.back() == reduced[d]) {
      groups_.back() *= full[d];
    } else {
      groups_.push_back(full[d]);
      group_reduced_.push_back(reduced[d]);
    }
  }
}

Shape Reduction::ReducedGroups() const {
  Shape dims = groups_;
  for (size_t g = 0; g < dims.size(); ++g) {
    if (group_reduced_[g]) dims[g] = 1;
  }
  return dims;
}

absl::Status Reduction::Prepare(absl::string_view node, DType dtype,
                                double scale) {
  scale_ = scale;
  if (!RunsOnDnnl({dtype, groups_}) || count_ <= 1 ||
      groups_.size() > DNNL_MAX_NDIMS) {
    return absl::OkStatus();  // the loop
  }
  return CatchDnnl(node, [&] {
    dnnl::primitive_attr attr = DefaultAttr();
    if (scale != 1) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_linear,
                         static_cast<float>(scale), 0.f);
      attr.set_post_ops(ops);
    }
    dnnl::reduction::primitive_desc pd(
        dnnl::reduction::desc(dnnl::algorithm::reduction_sum,
                              PlainDesc(groups_), PlainDesc(ReducedGroups()),
                              0.f, 0.f),
        attr, CpuEngine());
    primitive_ = MakePrimitive<dnnl::reduction>(pd);
    return absl::OkStatus();
  });
}

absl::Status Reduction::Run(absl::string_view node, DnnlRunner& dnnl,
                            const Tensor& in, Tensor& out) const {
  if (primitive_) {
    return ExecuteDnnl(
        dnnl, node, *primitive_,
        {{DNNL_ARG_SRC, WrapTensor(PlainDesc(groups_), in)},
         {DNNL_ARG_DST, WrapTensor(PlainDesc(ReducedGroups()), out)}});
  }
  DispatchFloat(out.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* ip = in.data<T>();
    T* op = out.data<T>();
    std::fill(op, op + out.num_elements(), T(0));
    ForEachElement([&](int64_t i, int64_t o) { op[o] += ip[i]; });
    // An empty mean is 0 · (1/0) = NaN, as in PyTorch.
    if (scale_ != 1) {
      const T scale = static_cast<T>(scale_);
      for (int64_t o = 0; o < out.num_elements(); ++o) op[o] *= scale;
    }
  });
  return absl::OkStatus();
}

}  // namespace gradserve
