// Pow: torch.pow(x, exponent), the exponent a scalar attribute or a tensor
// input broadcasting with x. Values are libm's pow (0^0 = 1; a negative
// base with a non-integer exponent is NaN), with the shortcuts torch takes
// for scalar exponents (0: ones, 1: x, 2: x·x, 3: x·x·x, 0.5: sqrt, -0.5:
// 1/sqrt, -1: 1/x, -2: 1/(x·x); so (-inf)^0.5 is NaN as in torch).
// Gradients as torch's pow_backward*:
//   scalar e:  dL/dx = 0 for e = 0, else dY·e·x^(e-1)
//   tensor e:  dL/dx = dY·(e = 0 ? 0 : e·x^(e-1))
//              dL/de = dY·(x = 0 and e >= 0 ? 0 : y·ln x)
// summed down to each input's shape when it was broadcast.
//
// int64 as torch: int64 x with an int64 exponent tensor or an integral
// scalar exponent gives int64 (exponentiation by squaring, wrapping; a
// negative scalar exponent is INVALID_ARGUMENT, "Integers to negative
// integer powers are not allowed"; a negative tensor exponent gives 1 for
// x = 1, ±1 for x = -1, else 0, as torch's powi); any float operand makes
// it float, the int64 one promoted. Only float operands have gradients.
#include <array>
#include <cmath>
#include <limits>
#include <optional>

#include "core/op_registry.h"
#include "core/ops/broadcast.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// x^e for a scalar e, as torch's pow(Tensor, Scalar).
// torch's powi for int64.
int64_t IntPow(int64_t x, int64_t e) {
  if (e < 0) {
    if (x == 1) return 1;
    if (x == -1) return e % 2 == 0 ? 1 : -1;
    return 0;
  }
  int64_t result = 1;
  while (e > 0) {
    if (e & 1) result = WrapMul(result, x);
    x = WrapMul(x, x);
    e >>= 1;
  }
  return result;
}

double ScalarPow(double x, double e) {
  if (e == 0) return 1;
  if (e == 1) return x;
  if (e == 2) return x * x;
  if (e == 3) return x * x * x;
  if (e == 0.5) return std::sqrt(x);
  if (e == -0.5) return 1 / std::sqrt(x);
  if (e == -1) return 1 / x;
  if (e == -2) return 1 / (x * x);
  return std::pow(x, e);
}

class PowOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(ExpectFloatOrInt64(c, 0));
    auto op = std::make_unique<PowOp>();
    const std::vector<double> scalar = c.attrs().GetFloats("exponent");
    if (scalar.size() > 1) {
      return c.attrs().Invalid("exponent",
                               "one float (or none: input 'exponent')");
    }
    op->x_ = c.shape(0);
    Shape out = c.shape(0);
    if (c.has_input(1)) {
      if (!scalar.empty()) {
        return c.Error("attribute 'exponent' and ", c.Describe(1),
                       " are both given; give the exponent one way");
      }
      RETURN_IF_ERROR(ExpectFloatOrInt64(c, 1));
      op->tensor_ = true;
      op->e_ = c.shape(1);
      std::optional<Shape> b = BroadcastShape(c.shape(0), c.shape(1));
      if (!b) {
        return c.Error(c.Describe(0), " ", ShapeToString(c.shape(0)), " and ",
                       c.Describe(1), " ", ShapeToString(c.shape(1)),
                       " do not broadcast");
      }
      out = *b;
    } else if (scalar.empty()) {
      return c.Error(
          "the exponent is missing: give attribute 'exponent' (a float) or "
          "input 'exponent' (a tensor)");
    } else {
      op->exponent_ = scalar[0];
    }
    RETURN_IF_ERROR(op->ReadDtypes(c));
    op->out_ = out;
    op->sum_x_ = Reduction(out, BroadcastDims(op->x_, out));
    op->sum_e_ = Reduction(out, BroadcastDims(op->e_, out));
    op->outputs_ = {{op->int_out_ ? DType::kInt64 : c.float_dtype(), out}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // The output-shaped gradients before they are summed down.
  // (And the float copies of int64 operands of a float y.)
  int64_t ExtraBytes() const override {
    int64_t promoted = 0;
    if (!int_out_) {
      const int64_t size = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
      if (int_[0]) promoted = MulSat(ElementCount(x_), size);
      if (int_[1]) promoted = SumSat(promoted, MulSat(ElementCount(e_), size));
    }
    return SumSat(promoted, tensor_ ? MulSat(outputs_[0].num_bytes(), 2) : 0);
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    if (!tensor_) return {{0}, {}};
    SavedValues s{{0, 1}, {}};
    if (needs_grad[1]) s.outputs.push_back(0);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    if (int_out_) return IntForward(ctx);
    const Tensor x = Promoted(ctx, 0);
    const Tensor e = tensor_ ? Promoted(ctx, 1) : Tensor();
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      if (!tensor_) {
        for (int64_t i = 0; i < y.num_elements(); ++i) {
          yp[i] = static_cast<T>(ScalarPow(xp[i], exponent_));
        }
        return;
      }
      const T* ep = e.data<T>();
      ForEachBroadcast(out_, x_, e_, [&](int64_t o, int64_t i, int64_t j) {
        yp[o] = std::pow(xp[i], ep[j]);
      });
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!tensor_) return ScalarBackward(ctx);
    const Tensor& dy = ctx.grad_output(0);
    Tensor full_x = Tensor::Empty(dy.dtype(), out_);
    const bool want_e = ctx.needs_grad(1);
    Tensor full_e = want_e ? Tensor::Empty(dy.dtype(), out_) : Tensor();
    const Tensor x = Promoted(ctx, 0);
    const Tensor e = Promoted(ctx, 1);
    DispatchFloat(dy.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      const T* ep = e.data<T>();
      const T* yp = want_e ? ctx.output(0).data<T>() : nullptr;
      const T* gp = dy.data<T>();
      T* dxp = full_x.data<T>();
      T* dep = want_e ? full_e.data<T>() : nullptr;
      ForEachBroadcast(out_, x_, e_, [&](int64_t o, int64_t i, int64_t j) {
        const T x = xp[i], e = ep[j];
        dxp[o] = e == 0 ? T(0) : gp[o] * (e * std::pow(x, e - 1));
        if (yp)
          dep[o] = gp[o] * (x == 0 && e >= 0 ? T(0) : yp[o] * std::log(x));
      });
    });
    if (ctx.needs_grad(0)) ctx.SetGradInput(0, SumTo(sum_x_, full_x, x_));
    if (want_e) ctx.SetGradInput(1, SumTo(sum_e_, full_e, e_));
    return absl::OkStatus();
  }

 private:
  // Which operands are int64, and whether y is.
  absl::Status ReadDtypes(const OpConfig& c) {
    int_ = {c.input(0).dtype == DType::kInt64,
            tensor_ && c.input(1).dtype == DType::kInt64};
    const bool integral_scalar = !tensor_ &&
                                 exponent_ == std::trunc(exponent_) &&
                                 std::abs(exponent_) < 0x1p63;
    int_out_ = int_[0] && (int_[1] || integral_scalar);
    if (int_out_ && !tensor_ && exponent_ < 0) {
      return c.Error("Integers to negative integer powers are not allowed: ",
                     c.Describe(0), " is int64 and the exponent is ",
                     exponent_);
    }
    return absl::OkStatus();
  }

  template <typename Context>
  Tensor Promoted(const Context& ctx, int i) const {
    return int_[i] ? ctx.input(i).ToFloating(outputs_[0].dtype) : ctx.input(i);
  }

  absl::Status IntForward(ForwardContext& ctx) const {
    const int64_t* xp = ctx.input(0).data<int64_t>();
    Tensor& y = ctx.AllocateOutput(0);
    int64_t* yp = y.data<int64_t>();
    if (!tensor_) {
      const int64_t e = static_cast<int64_t>(exponent_);
      for (int64_t i = 0; i < y.num_elements(); ++i) yp[i] = IntPow(xp[i], e);
      return absl::OkStatus();
    }
    const int64_t* ep = ctx.input(1).data<int64_t>();
    ForEachBroadcast(out_, x_, e_, [&](int64_t o, int64_t i, int64_t j) {
      yp[o] = IntPow(xp[i], ep[j]);
    });
    return absl::OkStatus();
  }

  absl::Status ScalarBackward(BackwardContext& ctx) const {
    if (!ctx.needs_grad(0)) return absl::OkStatus();  // an int64 x
    const Tensor& dy = ctx.grad_output(0);
    if (exponent_ == 0) {
      ctx.SetGradInput(0, Tensor::Zeros(dy.meta()));
      return absl::OkStatus();
    }
    Tensor dx = Tensor::Empty(dy.meta());
    const Tensor x = Promoted(ctx, 0);
    DispatchFloat(dy.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = x.data<T>();
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      const T e = static_cast<T>(exponent_);
      for (int64_t i = 0; i < dx.num_elements(); ++i) {
        const T power = static_cast<T>(ScalarPow(xp[i], exponent_ - 1));
        dp[i] = gp[i] * (e * power);
      }
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

  bool tensor_ = false;
  std::array<bool, 2> int_ = {false, false};
  bool int_out_ = false;
  double exponent_ = 1;
  Shape x_, e_, out_;
  Reduction sum_x_, sum_e_;
};

OpSchema PowSchema() {
  OpSchema s;
  s.name = "Pow";
  s.description =
      "y = x^exponent, torch.pow; the exponent a scalar attribute or a tensor "
      "broadcasting with x; int64 x with an int64 or integral exponent gives "
      "int64";
  s.inputs = {{"x"}, {"exponent", /*optional=*/true}};
  s.attrs = {{"exponent", AttrType::kFloats, AttrValue(std::vector<double>{}),
              "a scalar exponent (one float); none = input 'exponent'"}};
  s.create = PowOp::Create;
  return s;
}

REGISTER_OP(PowSchema());

}  // namespace
}  // namespace gradserve
