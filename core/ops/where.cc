// Where: torch.where(condition, x, y) with NumPy broadcasting of all three.
// The wire has no bool dtype: condition is int64 or floating, true where
// nonzero (NaN is nonzero). x and y are of one dtype (floating or int64).
// dL/dx = dY where the condition holds, dL/dy = dY elsewhere, each summed
// down to its input's shape; a floating condition's gradient is 0 (the
// function is piecewise constant in it; torch's bool condition has none).
#include <array>
#include <optional>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/broadcast.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class WhereOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    if (IsFloating(c.input(0).dtype)) RETURN_IF_ERROR(c.ExpectFloat(0));
    const DType dtype = c.input(1).dtype;
    if (IsFloating(dtype)) RETURN_IF_ERROR(c.ExpectFloat(1));
    if (c.input(2).dtype != dtype) {
      return c.Error(c.Describe(2), " must be ", DTypeName(dtype), " like ",
                     c.Describe(1), ", got ", c.input(2).ToString());
    }
    std::optional<Shape> out = BroadcastShape(c.shape(0), c.shape(1));
    if (out) out = BroadcastShape(*out, c.shape(2));
    if (!out) {
      return c.Error(c.Describe(0), " ", ShapeToString(c.shape(0)), ", ",
                     c.Describe(1), " ", ShapeToString(c.shape(1)), " and ",
                     c.Describe(2), " ", ShapeToString(c.shape(2)),
                     " do not broadcast");
    }
    auto op = std::make_unique<WhereOp>();
    for (int i = 0; i < 3; ++i) {
      op->shapes_[i] = c.shape(i);
      op->sums_[i] = Reduction(*out, BroadcastDims(c.shape(i), *out));
    }
    op->out_ = *out;
    op->outputs_ = {{dtype, *out}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // The output-shaped gradients before they are summed down.
  int64_t ExtraBytes() const override {
    return MulSat(outputs_[0].num_bytes(), 2);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    return {{0}, {}};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& cond = ctx.input(0);
    const Tensor& x = ctx.input(1);
    const Tensor& y = ctx.input(2);
    Tensor& out = ctx.AllocateOutput(0);
    auto copy = [&](auto* op, const auto* xp, const auto* yp) {
      Each(cond, [&](int64_t o, const std::array<int64_t, 3>& idx, bool c) {
        op[o] = c ? xp[idx[1]] : yp[idx[2]];
      });
    };
    if (DTypeSize(out.dtype()) == 4) {
      copy(out.data<uint32_t>(), x.data<uint32_t>(), y.data<uint32_t>());
    } else {
      copy(out.data<uint64_t>(), x.data<uint64_t>(), y.data<uint64_t>());
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& dy = ctx.grad_output(0);
    const Tensor& cond = ctx.input(0);
    if (ctx.needs_grad(0)) {
      ctx.SetGradInput(0, Tensor::Zeros(cond.dtype(), shapes_[0]));
    }
    for (int k : {1, 2}) {
      if (!ctx.needs_grad(k)) continue;
      Tensor full = Tensor::Zeros(dy.meta());
      DispatchFloat(dy.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* gp = dy.data<T>();
        T* fp = full.data<T>();
        Each(cond, [&](int64_t o, const std::array<int64_t, 3>&, bool c) {
          if (c == (k == 1)) fp[o] = gp[o];
        });
      });
      ctx.SetGradInput(k, SumTo(sums_[k], full, shapes_[k]));
    }
    return absl::OkStatus();
  }

 private:
  // Calls f(o, idx, condition) over the output.
  template <typename F>
  void Each(const Tensor& cond, F&& f) const {
    auto at = [&](int64_t i) {
      switch (cond.dtype()) {
        case DType::kInt64:
          return cond.data<int64_t>()[i] != 0;
        case DType::kFloat64:
          return cond.data<double>()[i] != 0;
        case DType::kFloat32:
          break;
      }
      return cond.data<float>()[i] != 0;
    };
    ForEachBroadcastN<3>(out_, shapes_,
                         [&](int64_t o, const std::array<int64_t, 3>& idx) {
                           f(o, idx, at(idx[0]));
                         });
  }

  std::array<Shape, 3> shapes_;
  std::array<Reduction, 3> sums_;
  Shape out_;
};

OpSchema WhereSchema() {
  OpSchema s;
  s.name = "Where";
  s.description =
      "y = x where condition (int64 or float, nonzero = true), else y; "
      "torch.where, broadcasting all three";
  s.inputs = {{"condition"}, {"x"}, {"y"}};
  s.create = WhereOp::Create;
  return s;
}

REGISTER_OP(WhereSchema());

}  // namespace
}  // namespace gradserve
