// Sum and Mean over a set of axes (all by default), with or without keepdims.
// Forward is a Reduction (accumulated in double); backward broadcasts dY back
// over the reduced dims (scaled by 1/count for Mean) in one loop for both
// dtypes. Reducing nothing (only size-1 axes) is a view both ways.
// int64 x as torch: Sum gives int64 (wrapping on overflow); with a dtype,
// Sum and Mean compute on x promoted to it; Mean without one refuses int64
// x, as torch.mean does. int64 x has no gradient.
#include <algorithm>
#include <string>

#include "core/op_registry.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/ops/reduce_axes.h"
#include "core/ops/reduction.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class ReduceOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool mean) {
    RETURN_IF_ERROR(ExpectFloatOrInt64(c, 0));
    RETURN_IF_ERROR(CheckDtypeAttr(c));
    const bool int_x = c.input(0).dtype == DType::kInt64;
    const bool promote = int_x && !c.attrs().GetString("dtype").empty();
    if (int_x && mean && !promote) {
      return c.Error(c.Describe(0),
                     " is int64: Mean takes float x, or int64 x with a dtype "
                     "to compute in, as torch.mean");
    }
    const Shape& x = c.shape(0);
    ASSIGN_OR_RETURN(std::vector<bool> reduced, ReducedAxes(c));
    ASSIGN_OR_RETURN(Shape y, ReducedShape(c, reduced));
    auto op = std::make_unique<ReduceOp>();
    op->mean_ = mean;
    op->x_shape_ = x;
    op->reduction_ = Reduction(x, reduced);
    op->promote_ = promote;
    op->outputs_ = {{int_x && !promote ? DType::kInt64 : c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return ElementCount(x_shape_); }
  // A promoted int64 x: its float copy.
  int64_t ExtraBytes() const override {
    return promote_ ? MulSat(ElementCount(x_shape_),
                             static_cast<int64_t>(DTypeSize(outputs_[0].dtype)))
                    : 0;
  }
  int64_t BackwardFlops() const override { return ElementCount(x_shape_); }

  SavedValues Saves(const std::vector<bool>&) const override { return {}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor x =
        promote_ ? ctx.input(0).ToFloating(outputs_[0].dtype) : ctx.input(0);
    if (reduction_.count() == 1) {
      ctx.SetOutput(0, x.Reshaped(outputs_[0].shape));
      return absl::OkStatus();
    }
    if (x.dtype() == DType::kInt64) {
      Tensor& y = ctx.AllocateOutput(0);
      const int64_t* xp = x.data<int64_t>();
      int64_t* yp = y.data<int64_t>();
      std::fill(yp, yp + y.num_elements(), int64_t{0});
      reduction_.ForEachElement(
          [&](int64_t i, int64_t o) { yp[o] = WrapAdd(yp[o], xp[i]); });
      return absl::OkStatus();
    }
    reduction_.Run(x, ctx.AllocateOutput(0), Scale());
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const Tensor& dy = ctx.grad_output(0);
    if (reduction_.count() == 1) {
      ctx.SetGradInput(0, dy.Reshaped(x_shape_));
      return absl::OkStatus();
    }
    Tensor dx = Tensor::Empty(dy.dtype(), x_shape_);
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      const T scale = static_cast<T>(Scale());
      reduction_.ForEachElement(
          [&](int64_t i, int64_t o) { dp[i] = gp[o] * scale; });
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  // Mean is the sum scaled by 1/count (NaN for an empty mean, as in torch).
  double Scale() const {
    return mean_ ? 1.0 / static_cast<double>(reduction_.count()) : 1.0;
  }

  bool mean_ = false;
  bool promote_ = false;  // int64 x computed in the dtype attribute's dtype
  Shape x_shape_;
  Reduction reduction_;
};

OpSchema ReduceSchema(const std::string& name, bool mean) {
  OpSchema s;
  s.name = name;
  s.description = mean ? "y = mean of x over axes (int64 x needs dtype)"
                       : "y = sum of x over axes (int64 x: int64 y, or the "
                         "dtype's)";
  s.inputs = {{"x"}};
  s.attrs = ReduceAxesAttrs();
  s.attrs.push_back(DtypeAttr());
  s.create = [mean](const OpConfig& c) { return ReduceOp::Create(c, mean); };
  return s;
}

REGISTER_OP(ReduceSchema("Sum", /*mean=*/false));
REGISTER_OP(ReduceSchema("Mean", /*mean=*/true));

}  // namespace
}  // namespace gradserve
