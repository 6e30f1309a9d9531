// Clamping and soft clamping, as PyTorch 1.13 defines them:
//   Hardtanh  torch.nn.functional.hardtanh(x, min_val, max_val): forward
//             torch.clamp(x, min_val, max_val) (all max_val when
//             min_val > max_val); dL/dx = dY strictly inside (min_val,
//             max_val), 0 at and beyond the bounds (hardtanh_backward).
//   ReLU6     torch.nn.functional.relu6 = Hardtanh(0, 6).
//   Softplus  torch.nn.functional.softplus(x, beta, threshold): x where
//             beta·x > threshold, else log1p(exp(beta·x))/beta.
//   Clamp     torch.clamp(x, min, max): bounds scalar attributes or tensor
//             inputs (broadcasting with x), either left out; NaN propagates
//             (and a NaN tensor bound gives NaN). Gradients as torch's
//             clamp_backward_min_max: dL/dx = dY where min <= x <= max (the
//             bounds included); dL/dmin = dY where x < min (and min < max);
//             dL/dmax = dY where x > max (or max < min).
// All run loops in the request's dtype.
//
// int64 x as torch: Hardtanh and ReLU6 give int64, the bounds cast to int64
// (toward zero); Clamp gives int64 when its tensor bounds are int64 too and
// its scalar bounds integral (torch's int scalars), else the float dtype
// with the int64 values promoted (as a float bound promotes in torch). An
// int64 x or bound has no gradient.
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "core/op_registry.h"
#include "core/ops/broadcast.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// An elementwise function and its derivative, in the element type.
template <typename T>
struct Fns {
  std::function<T(T)> f, df;
};

// y = f(x), dL/dx = dY·df(x), in loops; f and df compute in the request's
// dtype as torch's kernels do (attributes rounded to it first).
class PointwiseOp : public Op {
 public:
  // make(T{}) gives the Fns<T> of the op.
  template <typename Make>
  PointwiseOp(const TensorMeta& x, Make make)
      : f32_(make(float{})), f64_(make(double{})) {
    outputs_ = {x};
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  SavedValues Saves(const std::vector<bool>&) const override { return {{0}}; }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const Fns<T>& fns = Of<T>();
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      for (int64_t i = 0; i < y.num_elements(); ++i) yp[i] = fns.f(xp[i]);
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    const Tensor& dy = ctx.grad_output(0);
    Tensor dx = Tensor::Empty(dy.meta());
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const Fns<T>& fns = Of<T>();
      const T* xp = x.data<T>();
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      for (int64_t i = 0; i < dx.num_elements(); ++i) {
        dp[i] = gp[i] * fns.df(xp[i]);
      }
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  template <typename T>
  const Fns<T>& Of() const {
    if constexpr (std::is_same_v<T, float>) {
      return f32_;
    } else {
      return f64_;
    }
  }

  Fns<float> f32_;
  Fns<double> f64_;
};

// Hardtanh of int64 x: clamp to the bounds cast to int64, no gradient.
class IntHardtanhOp : public Op {
 public:
  IntHardtanhOp(const TensorMeta& x, double lo, double hi)
      : lo_(static_cast<int64_t>(lo)), hi_(static_cast<int64_t>(hi)) {
    outputs_ = {x};
  }
  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  SavedValues Saves(const std::vector<bool>&) const override { return {}; }
  absl::Status Forward(ForwardContext& ctx) const override {
    const int64_t* xp = ctx.input(0).data<int64_t>();
    Tensor& y = ctx.AllocateOutput(0);
    int64_t* yp = y.data<int64_t>();
    for (int64_t i = 0; i < y.num_elements(); ++i) {
      yp[i] = std::min(std::max(xp[i], lo_), hi_);
    }
    return absl::OkStatus();
  }
  absl::Status Backward(BackwardContext&) const override {
    return absl::OkStatus();  // int64 x: no gradient
  }

 private:
  int64_t lo_, hi_;
};

// A bound cast to int64 must fit: torch casts a Python float to int64.
bool FitsInt64(double v) { return v >= -0x1p63 && v < 0x1p63; }

absl::StatusOr<std::unique_ptr<Op>> MakeHardtanh(const OpConfig& c, double lo,
                                                 double hi) {
  if (c.input(0).dtype == DType::kInt64) {
    if (!FitsInt64(lo) || !FitsInt64(hi)) {
      return c.Error("the bounds ", lo, " and ", hi, " must fit in int64 for ",
                     c.Describe(0), " (int64)");
    }
    return MakeOp(std::make_unique<IntHardtanhOp>(c.input(0), lo, hi));
  }
  RETURN_IF_ERROR(c.ExpectFloat(0));
  return MakeOp(std::make_unique<PointwiseOp>(c.input(0), [=](auto zero) {
    using T = decltype(zero);
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    // torch.clamp's forward: NaN stays NaN.
    return Fns<T>{[=](T x) { return std::min(std::max(x, l), h); },
                  [=](T x) { return x <= l || x >= h ? T(0) : T(1); }};
  }));
}

absl::StatusOr<std::unique_ptr<Op>> CreateHardtanh(const OpConfig& c) {
  return MakeHardtanh(c, c.attrs().GetFloat("min_val"),
                      c.attrs().GetFloat("max_val"));
}

absl::StatusOr<std::unique_ptr<Op>> CreateSoftplus(const OpConfig& c) {
  RETURN_IF_ERROR(c.ExpectFloat(0));
  const double beta = c.attrs().GetFloat("beta");
  const double threshold = c.attrs().GetFloat("threshold");
  return MakeOp(std::make_unique<PointwiseOp>(c.input(0), [=](auto zero) {
    using T = decltype(zero);
    const T b = static_cast<T>(beta), t = static_cast<T>(threshold);
    return Fns<T>{
        [=](T x) { return x * b > t ? x : std::log1p(std::exp(x * b)) / b; },
        [=](T x) {
          if (x * b > t) return T(1);
          const T z = std::exp(x * b);
          return z / (z + 1);
        }};
  }));
}

// One bound of Clamp: absent, a scalar attribute or a tensor input.
struct Bound {
  bool present = false;
  int input = -1;  // the tensor input, or -1
  double value = 0;
  Shape shape;  // [] unless a tensor
  Reduction sum;
  // An int64 tensor, an integral scalar (torch's int scalar) or absent.
  bool integral = true;

  bool tensor() const { return input >= 0; }
};

class ClampOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(IsFloating(c.input(0).dtype) ? c.ExpectFloat(0)
                                                 : c.ExpectInt64(0));
    auto op = std::make_unique<ClampOp>();
    ASSIGN_OR_RETURN(op->min_, ReadBound(c, "min", 1));
    ASSIGN_OR_RETURN(op->max_, ReadBound(c, "max", 2));
    op->x_ = c.shape(0);
    std::optional<Shape> out = c.shape(0);
    for (const Bound* b : {&op->min_, &op->max_}) {
      if (b->tensor() && out) out = BroadcastShape(*out, b->shape);
    }
    if (!out) {
      return c.Error(c.Describe(0), " ", ShapeToString(c.shape(0)),
                     " and the tensor bounds (min ",
                     ShapeToString(op->min_.shape), ", max ",
                     ShapeToString(op->max_.shape), ") do not broadcast");
    }
    op->out_ = *out;
    op->sum_x_ = Reduction(*out, BroadcastDims(op->x_, *out));
    for (Bound* b : {&op->min_, &op->max_}) {
      b->sum = Reduction(*out, BroadcastDims(b->shape, *out));
    }
    op->int_ = c.input(0).dtype == DType::kInt64;
    for (const Bound* b : {&op->min_, &op->max_}) {
      op->int_ = op->int_ && b->integral;
    }
    op->outputs_ = {{op->int_ ? DType::kInt64 : c.float_dtype(), *out}};
    for (int i = 0; i < c.num_inputs(); ++i) {
      op->promotes_ = op->promotes_ || (!op->int_ && c.has_input(i) &&
                                        c.input(i).dtype == DType::kInt64);
    }
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // The output-shaped gradients summed down to a broadcast input.
  // (And float copies of x and the bounds, at most y's size each, when an
  // int64 one is promoted.)
  int64_t ExtraBytes() const override {
    return MulSat(outputs_[0].num_bytes(), promotes_ ? 6 : 3);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    SavedValues s{{0}, {}};
    for (const Bound* b : {&min_, &max_}) {
      if (b->tensor()) s.inputs.push_back(b->input);
    }
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    const auto in = Inputs(ctx);
    if (int_) {
      int64_t* yp = y.data<int64_t>();
      Each<int64_t>(in, [&](int64_t o, int64_t x, int64_t lo, int64_t hi) {
        yp[o] = Clamped(x, lo, hi);
      });
      return absl::OkStatus();
    }
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* yp = y.data<T>();
      Each<T>(in, [&](int64_t o, T x, T lo, T hi) {
        yp[o] = static_cast<T>(Clamped(x, lo, hi));
      });
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& dy = ctx.grad_output(0);
    const DType dtype = dy.dtype();
    // Full-shape gradients of x, min and max.
    Tensor full[3] = {Tensor::Zeros(dtype, out_), Tensor::Zeros(dtype, out_),
                      Tensor::Zeros(dtype, out_)};
    const auto in = Inputs(ctx);
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T* gp = dy.data<T>();
      T* fp[3] = {full[0].data<T>(), full[1].data<T>(), full[2].data<T>()};
      Each<T>(in, [&](int64_t o, T x, T lo, T hi) {
        const int k = Receiver(x, lo, hi);
        if (k >= 0) fp[k][o] = gp[o];
      });
    });
    if (ctx.needs_grad(0)) ctx.SetGradInput(0, SumTo(sum_x_, full[0], x_));
    int k = 1;
    for (const Bound* b : {&min_, &max_}) {
      if (b->tensor() && ctx.needs_grad(b->input)) {
        ctx.SetGradInput(b->input, SumTo(b->sum, full[k], b->shape));
      }
      ++k;
    }
    return absl::OkStatus();
  }

 private:
  static absl::StatusOr<Bound> ReadBound(const OpConfig& c,
                                         const std::string& name, int input) {
    const std::vector<double> values = c.attrs().GetFloats(name);
    if (values.size() > 1) {
      return c.attrs().Invalid(name, "one float, or none (no bound)");
    }
    Bound b;
    if (c.has_input(input)) {
      if (!values.empty()) {
        return c.Error("attribute '", name, "' and ", c.Describe(input),
                       " are both given; give the bound one way");
      }
      RETURN_IF_ERROR(IsFloating(c.input(input).dtype) ? c.ExpectFloat(input)
                                                       : c.ExpectInt64(input));
      b.present = true;
      b.input = input;
      b.shape = c.shape(input);
      b.integral = c.input(input).dtype == DType::kInt64;
    } else if (!values.empty()) {
      b.present = true;
      b.value = values[0];
      b.integral = values[0] == std::trunc(values[0]) && FitsInt64(values[0]);
    }
    return b;
  }

  // x and the tensor bounds (null where a bound is no tensor), in the
  // output's dtype: int64 ones promoted when it is a float dtype.
  template <typename Context>
  std::array<Tensor, 3> Inputs(const Context& ctx) const {
    std::array<Tensor, 3> in;
    in[0] = ctx.input(0);
    for (const Bound* b : {&min_, &max_}) {
      if (b->tensor()) in[b->input] = ctx.input(b->input);
    }
    if (!int_) {
      for (Tensor& t : in) {
        if (t.defined()) t = t.ToFloating(outputs_[0].dtype);
      }
    }
    return in;
  }

  // Calls f(o, x, lo, hi) over the output, the bounds broadcast (a scalar
  // or absent bound read from its value).
  template <typename T, typename F>
  void Each(const std::array<Tensor, 3>& in, F&& f) const {
    const T* xp = in[0].template data<T>();
    const T lo_value = static_cast<T>(min_.value);
    const T hi_value = static_cast<T>(max_.value);
    const T* lo = min_.tensor() ? in[min_.input].template data<T>() : &lo_value;
    const T* hi = max_.tensor() ? in[max_.input].template data<T>() : &hi_value;
    ForEachBroadcastN<3>(out_, {x_, min_.shape, max_.shape},
                         [&](int64_t o, const std::array<int64_t, 3>& idx) {
                           f(o, xp[idx[0]], lo[idx[1]], hi[idx[2]]);
                         });
  }

  template <typename T>
  T Clamped(T x, T lo, T hi) const {
    if constexpr (std::is_floating_point_v<T>) {
      if ((min_.tensor() && std::isnan(lo)) ||
          (max_.tensor() && std::isnan(hi))) {
        return std::numeric_limits<T>::quiet_NaN();
      }
    }
    if (min_.present) x = std::max(x, lo);
    if (max_.present) x = std::min(x, hi);
    return x;
  }

  // Which input's gradient dY goes to: 0 (x), 1 (min), 2 (max) or none
  // (-1), as torch's clamp_backward_min_max.
  template <typename T>
  int Receiver(T x, T lo, T hi) const {
    if (min_.present && max_.present) {
      if (x >= lo && x <= hi) return 0;
      if (x < lo && lo < hi) return 1;
      if (x > hi || hi < lo) return 2;
      return -1;  // a NaN, or x < min == max
    }
    if (min_.present) return x >= lo ? 0 : (x < lo ? 1 : -1);
    if (max_.present) return x <= hi ? 0 : (x > hi ? 2 : -1);
    return 0;
  }

  Bound min_, max_;
  bool int_ = false;       // int64 x and bounds: int64 y
  bool promotes_ = false;  // a float y with an int64 x or bound
  Shape x_, out_;
  Reduction sum_x_;
};

AttrSpec FloatAttr(const char* name, double value, const char* description) {
  return {name, AttrType::kFloat, AttrValue(value), description};
}

OpSchema HardtanhSchema() {
  OpSchema s;
  s.name = "Hardtanh";
  s.description =
      "y = clamp(x, min_val, max_val), torch.nn.functional.hardtanh; "
      "dL/dx = 0 at the bounds; int64 x gives int64 (the bounds cast to "
      "int64)";
  s.inputs = {{"x"}};
  s.attrs = {FloatAttr("min_val", -1.0, "lower bound"),
             FloatAttr("max_val", 1.0,
                       "upper bound (min_val > max_val: "
                       "y = max_val, as torch)")};
  s.create = CreateHardtanh;
  return s;
}

OpSchema ReLU6Schema() {
  OpSchema s;
  s.name = "ReLU6";
  s.description =
      "y = min(max(x, 0), 6), torch.nn.functional.relu6; int64 x gives int64";
  s.inputs = {{"x"}};
  s.create = [](const OpConfig& c) { return MakeHardtanh(c, 0, 6); };
  return s;
}

OpSchema SoftplusSchema() {
  OpSchema s;
  s.name = "Softplus";
  s.description =
      "y = log(1 + exp(beta·x))/beta, or x where beta·x > threshold "
      "(torch.nn.functional.softplus)";
  s.inputs = {{"x"}};
  s.attrs = {FloatAttr("beta", 1.0, "the sharpness"),
             FloatAttr("threshold", 20.0, "beta·x above which y = x")};
  s.create = CreateSoftplus;
  return s;
}

OpSchema ClampSchema() {
  OpSchema s;
  s.name = "Clamp";
  s.description =
      "y = min(max(x, min), max), torch.clamp; bounds scalars or tensors "
      "broadcasting with x, either may be left out; int64 x with int64 "
      "tensor and integral scalar bounds gives int64, else the float dtype";
  s.inputs = {{"x"}, {"min", /*optional=*/true}, {"max", /*optional=*/true}};
  const AttrValue none{std::vector<double>{}};
  s.attrs = {{"min", AttrType::kFloats, none,
              "a scalar lower bound (one float); none = input 'min' or no "
              "lower bound"},
             {"max", AttrType::kFloats, none,
              "a scalar upper bound (one float); none = input 'max' or no "
              "upper bound"}};
  s.create = ClampOp::Create;
  return s;
}

REGISTER_OP(HardtanhSchema());
REGISTER_OP(ReLU6Schema());
REGISTER_OP(SoftplusSchema());
REGISTER_OP(ClampSchema());

}  // namespace
}  // namespace gradserve
