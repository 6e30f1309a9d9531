// Sum and Mean over a set of axes (all by default), with or without keepdims.
// Adjacent dims that are both reduced or both kept are merged first, so the
// work is a reduction over alternating [kept, reduced, kept, ...] groups.
// float32 forward runs the oneDNN reduction primitive (its dst keeps size-1
// dims where reduced); backward broadcasts dY back over the reduced dims
// (scaled by 1/count for Mean) in one loop for both dtypes. Reducing nothing
// (only size-1 axes) is a view both ways.
#include <algorithm>
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class ReduceOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool mean) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    const Shape& x = c.shape(0);
    const int rank = static_cast<int>(x.size());
    const int64_t keepdims = c.attrs().GetInt("keepdims");
    if (keepdims != 0 && keepdims != 1) {
      return c.attrs().Invalid("keepdims", "0 or 1");
    }
    ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.attrs().GetInts("axes"));
    // As in PyTorch, a scalar has one axis (0 or -1) that reduces nothing.
    std::vector<bool> reduced(std::max(rank, 1), axes.empty());
    for (int64_t a : axes) {
      ASSIGN_OR_RETURN(int axis, c.NormalizeAxis("axes", a, std::max(rank, 1)));
      if (reduced[axis]) {
        return c.Error("attribute 'axes' names dim ", axis,
                       " more than once, got ", ShapeToString(axes));
      }
      reduced[axis] = true;
    }
    auto op = std::make_unique<ReduceOp>();
    op->node_ = std::string(c.node());
    op->mean_ = mean;
    op->x_shape_ = x;
    Shape y;
    for (int d = 0; d < rank; ++d) {
      if (reduced[d]) {
        op->count_ *= x[d];
        if (keepdims) y.push_back(1);
      } else {
        y.push_back(x[d]);
      }
      if (x[d] == 1) continue;  // a size-1 dim joins either kind of group
      if (!op->groups_.empty() && op->group_reduced_.back() == reduced[d]) {
        op->groups_.back() *= x[d];
      } else {
        op->groups_.push_back(x[d]);
        op->group_reduced_.push_back(reduced[d]);
      }
    }
    op->outputs_ = {{c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return ElementCount(x_shape_); }
  int64_t BackwardFlops() const override { return ElementCount(x_shape_); }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Prepare(const PrepareInfo&) override {
    if (!RunsOnDnnl({outputs_[0].dtype, x_shape_}) || count_ <= 1 ||
        groups_.size() > DNNL_MAX_NDIMS) {
      return absl::OkStatus();  // a view, or the loop
    }
    return CatchDnnl(node_, [&] {
      dnnl::reduction::primitive_desc pd(
          dnnl::reduction::desc(mean_ ? dnnl::algorithm::reduction_mean
                                      : dnnl::algorithm::reduction_sum,
                                PlainDesc(groups_), PlainDesc(ReducedGroups()),
                                0.f, 0.f),
          DefaultAttr(), CpuEngine());
      forward_ = MakePrimitive<dnnl::reduction>(pd);
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (count_ == 1) {
      ctx.SetOutput(0, x.Reshaped(outputs_[0].shape));
      return absl::OkStatus();
    }
    Tensor& y = ctx.AllocateOutput(0);
    if (forward_) {
      return ExecuteDnnl(
          ctx.dnnl(), node_, *forward_,
          {{DNNL_ARG_SRC, WrapTensor(PlainDesc(groups_), x)},
           {DNNL_ARG_DST, WrapTensor(PlainDesc(ReducedGroups()), y)}});
    }
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      std::fill(yp, yp + y.num_elements(), T(0));
      ForEachElement([&](int64_t i, int64_t o) { yp[o] += xp[i]; });
      // An empty reduction gives a mean of 0/0 = NaN, as in PyTorch.
      if (mean_) {
        for (int64_t o = 0; o < y.num_elements(); ++o) {
          yp[o] /= static_cast<T>(count_);
        }
      }
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const Tensor& dy = ctx.grad_output(0);
    if (count_ == 1) {
      ctx.SetGradInput(0, dy.Reshaped(x_shape_));
      return absl::OkStatus();
    }
    Tensor dx = Tensor::Empty(dy.dtype(), x_shape_);
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      // count_ > 0 whenever dx has elements.
      const T scale = mean_ ? T(1) / static_cast<T>(count_) : T(1);
      ForEachElement([&](int64_t i, int64_t o) { dp[i] = gp[o] * scale; });
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  // The groups with reduced ones set to 1: the shape of the output.
  Shape ReducedGroups() const {
    Shape dims = groups_;
    for (size_t g = 0; g < dims.size(); ++g) {
      if (group_reduced_[g]) dims[g] = 1;
    }
    return dims;
  }

  // Calls f(i, o) for every input element i, in order, with o the output
  // element it reduces into.
  template <typename F>
  void ForEachElement(F&& f) const {
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

  std::string node_;
  bool mean_ = false;
  Shape x_shape_;
  int64_t count_ = 1;  // input elements per output element
  Shape groups_;       // merged dims of x, without size-1 dims
  std::vector<bool> group_reduced_;
  std::optional<DnnlPrimitive> forward_;
};

OpSchema ReduceSchema(const std::string& name, bool mean) {
  OpSchema s;
  s.name = name;
  s.description = mean ? "y = mean of x over axes" : "y = sum of x over axes";
  s.inputs = {{"x"}};
  s.attrs = {{"axes", AttrType::kInts, AttrValue(std::vector<int64_t>{}),
              "axes to reduce, negative counting from the end; empty = all"},
             {"keepdims", AttrType::kInt, AttrValue(int64_t{0}),
              "1 keeps reduced axes as size-1 dims"}};
  s.create = [mean](const OpConfig& c) { return ReduceOp::Create(c, mean); };
  return s;
}

REGISTER_OP(ReduceSchema("Sum", /*mean=*/false));
REGISTER_OP(ReduceSchema("Mean", /*mean=*/true));

}  // namespace
}  // namespace gradserve
