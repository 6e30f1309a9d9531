// Max and Min over a set of axes (all by default), with or without
// keepdims. With one output they are torch.amax / torch.amin: NaN
// propagates, and dL/dx splits dY evenly among the elements equal to the
// result (torch's amax_backward: dY / count · [x == y], NaN where no
// element equals a NaN result). With a second output, the indices (int64,
// along the one axis `axes` names), they are torch.max(x, dim, keepdim) /
// torch.min(...): the first extreme element (or the first NaN) is chosen
// and dL/dx is dY at the chosen element only, as torch's
// value_selecting_reduction_backward. Reducing a dim of size 0 is
// INVALID_ARGUMENT, as in PyTorch. int64 x gives int64 y (no gradient).
#include <cmath>
#include <string>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/reduce_axes.h"
#include "core/ops/reduction.h"
#include "core/ops/source_grad.h"
#include "core/ops/tensor_op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class ExtremumOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool max) {
    RETURN_IF_ERROR(ExpectFloatOrInt64(c, 0));
    const Shape& x = c.shape(0);
    ASSIGN_OR_RETURN(std::vector<bool> reduced, ReducedAxes(c));
    ASSIGN_OR_RETURN(Shape y, ReducedShape(c, reduced));
    for (size_t d = 0; d < x.size(); ++d) {
      if (reduced[d] && x[d] == 0) {
        return c.Error("cannot reduce dim ", d, " of ", c.Describe(0),
                       " of shape ", ShapeToString(x), ": it has size 0 (no ",
                       max ? "maximum" : "minimum", ")");
      }
    }
    auto op = std::make_unique<ExtremumOp>();
    op->max_ = max;
    op->x_ = x;
    op->reduction_ = Reduction(x, reduced);
    const bool int_x = c.input(0).dtype == DType::kInt64;
    op->outputs_ = {{int_x ? DType::kInt64 : c.float_dtype(), y}};
    if (c.num_outputs() == 2) {
      ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.attrs().GetInts("axes"));
      if (axes.size() != 1) {
        return c.Error(
            "the indices output needs exactly one axis in 'axes' "
            "(torch.max(x, dim)), got ",
            ShapeToString(axes));
      }
      const int axis = static_cast<int>(
          std::find(reduced.begin(), reduced.end(), true) - reduced.begin());
      op->split_ = SplitAtAxis(x, axis);
      op->indices_ = true;
      op->outputs_.push_back({DType::kInt64, y});
    }
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return ElementCount(x_); }
  // The chosen elements (int64, one per output element).
  int64_t ExtraBytes() const override {
    return MulSat(outputs_[0].num_elements(), 8);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    if (indices_) return {};  // the saved choice
    return {{0}, {0}};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.AllocateOutput(0);
    Tensor chosen = Tensor::Empty(DType::kInt64, outputs_[0].shape);
    int64_t* cp = chosen.data<int64_t>();
    std::fill(cp, cp + chosen.num_elements(), int64_t{-1});
    DispatchNumeric(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      reduction_.ForEachElement([&](int64_t i, int64_t o) {
        const T v = xp[i];
        if (cp[o] < 0 || (!IsNan(yp[o]) && Beats(v, yp[o]))) {
          yp[o] = v;
          cp[o] = i;
        }
      });
    });
    if (!indices_) return absl::OkStatus();
    Tensor& indices = ctx.AllocateOutput(1);
    int64_t* ip = indices.data<int64_t>();
    for (int64_t o = 0; o < indices.num_elements(); ++o) {
      ip[o] = cp[o] / split_.inner % split_.dim;
    }
    if (ctx.backward_will_run()) ctx.Save(std::move(chosen));
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const Tensor& dy = ctx.grad_output(0);
    if (indices_) {
      const int64_t* cp = ctx.saved()[0].data<int64_t>();
      ctx.SetGradInput(0, AddIntoSources(dy, x_, [&](auto f) {
                         for (int64_t o = 0; o < dy.num_elements(); ++o) {
                           f(o, cp[o]);
                         }
                       }));
      return absl::OkStatus();
    }
    Tensor dx = Tensor::Empty(dy.dtype(), x_);
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      const T* xp = ctx.input(0).data<T>();
      const T* yp = ctx.output(0).data<T>();
      std::vector<int64_t> count(dy.num_elements(), 0);
      reduction_.ForEachElement(
          [&](int64_t i, int64_t o) { count[o] += xp[i] == yp[o]; });
      reduction_.ForEachElement([&](int64_t i, int64_t o) {
        dp[i] = gp[o] / static_cast<T>(count[o]) * T(xp[i] == yp[o]);
      });
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  template <typename T>
  static bool IsNan(T v) {
    return v != v;
  }

  // Whether v replaces the current extreme e: strictly beyond it, or NaN.
  template <typename T>
  bool Beats(T v, T e) const {
    return max_ ? !(v <= e) : !(v >= e);
  }

  bool max_ = true;
  bool indices_ = false;
  Shape x_;
  Reduction reduction_;
  AxisSplit split_;
};

OpSchema ExtremumSchema(const std::string& name, bool max) {
  OpSchema s;
  s.name = name;
  s.description = max ? "y = max of x over axes (torch.amax; with indices, "
                        "torch.max(x, dim)); int64 x gives int64"
                      : "y = min of x over axes (torch.amin; with indices, "
                        "torch.min(x, dim)); int64 x gives int64";
  s.inputs = {{"x"}};
  s.outputs = {"y", "indices"};
  s.attrs = ReduceAxesAttrs();
  s.create = [max](const OpConfig& c) { return ExtremumOp::Create(c, max); };
  return s;
}

REGISTER_OP(ExtremumSchema("Max", /*max=*/true));
REGISTER_OP(ExtremumSchema("Min", /*max=*/false));

}  // namespace
}  // namespace gradserve
