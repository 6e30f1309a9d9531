// Unary elementwise ops: ReLU, LeakyReLU, ELU, GELU (erf, or tanh with
// approximate = "tanh"), Tanh, Sigmoid, Exp, Log, SiLU, Mish, Sqrt, Abs,
// Scale. One table below holds
// each op's formula, its derivative and the oneDNN algorithm that computes
// both; one EltwiseOp serves them all.
//
// float32 runs oneDNN's eltwise primitives. Where oneDNN can differentiate
// from the output (a *_use_dst_for_bwd algorithm) the op saves y rather than
// x, as PyTorch does for these functions; Scale's backward is Scale itself
// and saves nothing. float64 runs the same formulas in a loop.
//
// int64 x as torch: ReLU and Abs give int64 (|INT64_MIN| wraps); Tanh,
// Sigmoid, Exp, Log and Sqrt compute on x promoted to the float dtype; the
// others refuse it, as torch's kernels do. int64 x has no gradient.
#include <cmath>
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::algorithm;

struct EltwiseSpec {
  const char* name;
  const char* description;
  // The attribute that sets oneDNN's alpha, its default and meaning; none
  // if null.
  const char* alpha_attr;
  double alpha_default;
  const char* alpha_description;
  algorithm alg;      // forward, and backward from x
  algorithm dst_alg;  // backward from y, or undef
  // dst_alg is valid only for alpha >= 0 (ReLU and ELU slopes).
  bool dst_needs_nonnegative_alpha;
  double (*f)(double x, double alpha);
  double (*dfdx)(double x, double alpha);  // dy/dx from x
  double (*dfdy)(double y, double alpha);  // dy/dx from y, when dst_alg
  // oneDNN's float32 kernel is less accurate than torch's (within 1 ulp):
  // float32 runs the loops too, f in double rounded once.
  bool loops_for_accuracy = false;
};

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

constexpr EltwiseSpec kSpecs[] = {
    {"ReLU", "y = max(x, 0)", nullptr, 0, nullptr, algorithm::eltwise_relu,
     algorithm::eltwise_relu_use_dst_for_bwd, false,
     [](double x, double) { return x > 0 ? x : 0.0; },
     [](double x, double) { return x > 0 ? 1.0 : 0.0; },
     [](double y, double) { return y > 0 ? 1.0 : 0.0; }},
    {"LeakyReLU", "y = x for x > 0, alpha·x otherwise", "alpha", 0.01,
     "slope for x <= 0", algorithm::eltwise_relu,
     algorithm::eltwise_relu_use_dst_for_bwd, true,
     [](double x, double a) { return x > 0 ? x : a * x; },
     [](double x, double a) { return x > 0 ? 1.0 : a; },
     [](double y, double a) { return y > 0 ? 1.0 : a; }},
    {"ELU", "y = x for x > 0, alpha·(exp(x) - 1) otherwise", "alpha", 1.0,
     "value approached as x -> -inf is -alpha", algorithm::eltwise_elu,
     algorithm::eltwise_elu_use_dst_for_bwd, true,
     [](double x, double a) { return x > 0 ? x : a * std::expm1(x); },
     [](double x, double a) { return x > 0 ? 1.0 : a * std::exp(x); },
     [](double y, double a) { return y > 0 ? 1.0 : y + a; }},
    {"GELU", "y = x·Φ(x) = 0.5·x·(1 + erf(x/√2))", nullptr, 0, nullptr,
     algorithm::eltwise_gelu_erf, algorithm::undef, false,
     [](double x, double) { return 0.5 * x * (1 + std::erf(x * kSqrtHalf)); },
     [](double x, double) {
       return 0.5 * (1 + std::erf(x * kSqrtHalf)) +
              x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
     },
     nullptr},
    {"Tanh", "y = tanh(x)", nullptr, 0, nullptr, algorithm::eltwise_tanh,
     algorithm::eltwise_tanh_use_dst_for_bwd, false,
     [](double x, double) { return std::tanh(x); }, nullptr,
     [](double y, double) { return 1 - y * y; }},
    {"Sigmoid", "y = 1 / (1 + exp(-x))", nullptr, 0, nullptr,
     algorithm::eltwise_logistic, algorithm::eltwise_logistic_use_dst_for_bwd,
     false, [](double x, double) { return 1 / (1 + std::exp(-x)); }, nullptr,
     [](double y, double) { return y * (1 - y); }},
    {"Exp", "y = exp(x)", nullptr, 0, nullptr, algorithm::eltwise_exp,
     algorithm::eltwise_exp_use_dst_for_bwd, false,
     [](double x, double) { return std::exp(x); }, nullptr,
     [](double y, double) { return y; }},
    {"Log", "y = ln(x) (NaN for x < 0, as in PyTorch)", nullptr, 0, nullptr,
     algorithm::eltwise_log, algorithm::undef, false,
     [](double x, double) { return std::log(x); },
     [](double x, double) { return 1 / x; }, nullptr,
     // oneDNN's avx2 log is off by up to ~2e-6 (log(1) = -1.4e-6).
     true},
    // SiLU is oneDNN's swish with alpha 1: alpha_default with no attribute.
    {"SiLU", "y = x·sigmoid(x)", nullptr, 1.0, nullptr,
     algorithm::eltwise_swish, algorithm::undef, false,
     [](double x, double) { return x / (1 + std::exp(-x)); },
     [](double x, double) {
       const double s = 1 / (1 + std::exp(-x));
       return s * (1 + x * (1 - s));
     },
     nullptr},
    {"Mish", "y = x·tanh(softplus(x))", nullptr, 0, nullptr,
     algorithm::eltwise_mish, algorithm::undef, false,
     [](double x, double) { return x * std::tanh(std::log1p(std::exp(x))); },
     [](double x, double) {
       const double t = std::tanh(std::log1p(std::exp(x)));
       return t + x * (1 - t * t) / (1 + std::exp(-x));
     },
     nullptr},
    {"Sqrt", "y = √x (NaN for x < 0, as in PyTorch)", nullptr, 0, nullptr,
     algorithm::eltwise_sqrt, algorithm::eltwise_sqrt_use_dst_for_bwd, false,
     [](double x, double) { return std::sqrt(x); }, nullptr,
     [](double y, double) { return 0.5 / y; }},
    {"Abs", "y = |x| (gradient 0 at 0, as PyTorch's)", nullptr, 0, nullptr,
     algorithm::eltwise_abs, algorithm::undef, false,
     [](double x, double) { return std::abs(x); },
     [](double x, double) { return x > 0   ? 1.0
                                   : x < 0 ? -1.0
                                           : 0.0; },
     nullptr},
    {"Scale", "y = factor·x", "factor", 1.0, "the factor",
     algorithm::eltwise_linear, algorithm::undef, false,
     [](double x, double a) { return a * x; },
     [](double, double a) { return a; }, nullptr},
};

// GELU with approximate = "tanh": 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + a·x³),
// a = 0.044715, as torch's gelu(approximate='tanh').
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

constexpr EltwiseSpec kGeluTanh = {
    "GELU",
    "",
    nullptr,
    0,
    nullptr,
    algorithm::eltwise_gelu_tanh,
    algorithm::undef,
    false,
    [](double x, double) {
      return 0.5 * x *
             (1 + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    },
    [](double x, double) {
      const double t = std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kSqrt2OverPi *
                                 (1 + 3 * kGeluCubic * x * x);
    },
    nullptr};

// The spec a node runs: GELU's `approximate` picks the erf or tanh form.
absl::StatusOr<const EltwiseSpec*> SpecOf(const OpConfig& c,
                                          const EltwiseSpec& spec) {
  if (spec.alg != algorithm::eltwise_gelu_erf) return &spec;
  const std::string& approximate = c.attrs().GetString("approximate");
  if (approximate == "none") return &spec;
  if (approximate == "tanh") return &kGeluTanh;
  return c.attrs().Invalid("approximate", "\"none\" or \"tanh\"");
}

// What an int64 x gives.
enum class IntRule { kRefused, kInt64, kToFloat };

IntRule IntRuleOf(const EltwiseSpec& spec) {
  const std::string name = spec.name;
  if (name == "ReLU" || name == "Abs") return IntRule::kInt64;
  for (const char* promoted : {"Tanh", "Sigmoid", "Exp", "Log", "Sqrt"}) {
    if (name == promoted) return IntRule::kToFloat;
  }
  return IntRule::kRefused;
}

// What backward reads.
enum class From { kInput, kOutput, kNothing };

class EltwiseOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    const EltwiseSpec& spec) {
    auto op = std::make_unique<EltwiseOp>();
    const bool int_x = c.input(0).dtype == DType::kInt64;
    op->int_rule_ = int_x ? IntRuleOf(spec) : IntRule::kRefused;
    if (!int_x || op->int_rule_ == IntRule::kRefused) {
      RETURN_IF_ERROR(c.ExpectFloat(0));
    }
    ASSIGN_OR_RETURN(op->spec_, SpecOf(c, spec));
    op->alpha_ = spec.alpha_attr ? c.attrs().GetFloat(spec.alpha_attr)
                                 : spec.alpha_default;
    if (spec.alg == algorithm::eltwise_linear) {
      op->from_ = From::kNothing;
    } else if (spec.dst_alg != algorithm::undef &&
               !(spec.dst_needs_nonnegative_alpha && op->alpha_ < 0)) {
      op->from_ = From::kOutput;
    } else {
      op->from_ = From::kInput;
    }
    op->outputs_ = {c.input(0)};
    if (op->int_rule_ == IntRule::kToFloat) {
      op->outputs_[0].dtype = c.float_dtype();
    }
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return outputs_[0].num_elements(); }
  // A promoted int64 x: its float copy.
  int64_t ExtraBytes() const override {
    return int_rule_ == IntRule::kToFloat ? outputs_[0].num_bytes() : 0;
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    switch (from_) {
      case From::kInput:
        return {{0}, {}};
      case From::kOutput:
        return {{}, {0}};
      case From::kNothing:
        break;
    }
    return {};
  }

  // Elementwise ops keep whatever layout x comes in (blocked after a
  // convolution, say): y and dL/dx take the same one.
  bool HandlesLayouts() const override { return true; }
  std::shared_ptr<const Layout> OutputLayout(int) const override {
    return layout_;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0]) || outputs_[0].shape.size() > DNNL_MAX_NDIMS ||
        spec_->loops_for_accuracy || int_rule_ != IntRule::kRefused) {
      return absl::OkStatus();
    }
    layout_ = info.input_layouts[0];
    return CatchDnnl(node_, [&] {
      const auto data = DataDesc();
      const algorithm alg =
          from_ == From::kOutput ? spec_->dst_alg : spec_->alg;
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      dnnl::eltwise_forward::primitive_desc forward_pd(
          dnnl::eltwise_forward::desc(kind, alg, data, Alpha(), 0.f),
          DefaultAttr(), CpuEngine());
      forward_ = MakePrimitive<dnnl::eltwise_forward>(forward_pd);
      if (info.backward_will_run && from_ != From::kNothing) {
        dnnl::eltwise_backward::primitive_desc pd(
            dnnl::eltwise_backward::desc(alg, data, data, Alpha(), 0.f),
            DefaultAttr(), CpuEngine(), forward_pd);
        backward_ = MakePrimitive<dnnl::eltwise_backward>(pd);
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (forward_) {
      Tensor y = EmptyIn(outputs_[0], DataDesc());
      RETURN_IF_ERROR(Apply(ctx.dnnl(), x, y));
      ctx.SetOutput(0, std::move(y));
      return absl::OkStatus();
    }
    if (int_rule_ == IntRule::kInt64) {
      IntForward(x, ctx.AllocateOutput(0));
      return absl::OkStatus();
    }
    // The loops read plain x (a convolution's output may come blocked), an
    // int64 x promoted.
    const Tensor plain_x = int_rule_ == IntRule::kToFloat
                               ? x.ToFloating(outputs_[0].dtype)
                               : Plain(x, ctx.dnnl());
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = plain_x.data<T>();
      T* yp = y.data<T>();
      for (int64_t i = 0; i < y.num_elements(); ++i) {
        yp[i] = static_cast<T>(spec_->f(xp[i], alpha_));
      }
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();  // an int64 x
    if (forward_) {
      Tensor dx = EmptyIn(outputs_[0], DataDesc());
      RETURN_IF_ERROR(BackwardDnnl(ctx, dx));
      ctx.SetGradInput(0, std::move(dx));
      return absl::OkStatus();
    }
    // The loops: float64, empty tensors, or ops whose float32 kernel is not
    // accurate enough; on plain tensors.
    const Tensor dy = Plain(ctx.grad_output(0), ctx.dnnl());
    Tensor dx = Tensor::Empty(dy.meta());
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = dy.data<T>();
      T* dp = dx.data<T>();
      const int64_t n = dx.num_elements();
      if (from_ == From::kOutput) {
        const Tensor y = Plain(ctx.output(0), ctx.dnnl());
        const T* yp = y.data<T>();
        for (int64_t i = 0; i < n; ++i) {
          dp[i] = gp[i] * static_cast<T>(spec_->dfdy(yp[i], alpha_));
        }
      } else {
        // From::kNothing has a constant derivative: x is not read.
        const Tensor x =
            from_ == From::kInput ? Plain(ctx.input(0), ctx.dnnl()) : Tensor();
        const T* xp = x.defined() ? x.data<T>() : nullptr;
        for (int64_t i = 0; i < n; ++i) {
          dp[i] = gp[i] * static_cast<T>(spec_->dfdx(xp ? xp[i] : 0, alpha_));
        }
      }
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  // x's layout (blocked after a convolution), or plain.
  dnnl::memory::desc DataDesc() const {
    return layout_ ? layout_->desc : PlainDesc(outputs_[0].shape);
  }
  float Alpha() const { return static_cast<float>(alpha_); }

  // ReLU and Abs of int64 x.
  void IntForward(const Tensor& x, Tensor& y) const {
    const int64_t* xp = x.data<int64_t>();
    int64_t* yp = y.data<int64_t>();
    const bool abs = spec_->alg == algorithm::eltwise_abs;
    for (int64_t i = 0; i < y.num_elements(); ++i) {
      yp[i] = abs ? WrapAbs(xp[i]) : (xp[i] > 0 ? xp[i] : 0);
    }
  }

  absl::Status Apply(DnnlRunner& dnnl, const Tensor& in, Tensor& out) const {
    const auto data = DataDesc();
    return CatchDnnl(node_, [&] {
      const Tensor src = Reordered(in, data, dnnl);
      dnnl.Execute(*forward_, {{DNNL_ARG_SRC, WrapTensor(data, src)},
                               {DNNL_ARG_DST, WrapTensor(data, out)}});
      return absl::OkStatus();
    });
  }

  absl::Status BackwardDnnl(BackwardContext& ctx, Tensor& dx) const {
    // d(factor·x) = factor·dx: Scale's forward primitive applied to dY.
    if (from_ == From::kNothing)
      return Apply(ctx.dnnl(), ctx.grad_output(0), dx);
    const auto data = DataDesc();
    return CatchDnnl(node_, [&] {
      DnnlRunner& dnnl = ctx.dnnl();
      const bool from_output = from_ == From::kOutput;
      const Tensor saved =
          Reordered(from_output ? ctx.output(0) : ctx.input(0), data, dnnl);
      const Tensor dy = Reordered(ctx.grad_output(0), data, dnnl);
      dnnl.Execute(*backward_, {{from_output ? DNNL_ARG_DST : DNNL_ARG_SRC,
                                 WrapTensor(data, saved)},
                                {DNNL_ARG_DIFF_DST, WrapTensor(data, dy)},
                                {DNNL_ARG_DIFF_SRC, WrapTensor(data, dx)}});
      return absl::OkStatus();
    });
  }

  const EltwiseSpec* spec_ = nullptr;
  IntRule int_rule_ = IntRule::kRefused;
  double alpha_ = 0;
  From from_ = From::kInput;
  std::optional<DnnlPrimitive> forward_, backward_;
  std::shared_ptr<const Layout> layout_;
};

OpSchema EltwiseSchema(const EltwiseSpec& spec) {
  OpSchema s;
  s.name = spec.name;
  s.description = spec.description;
  switch (IntRuleOf(spec)) {
    case IntRule::kInt64:
      s.description += "; int64 x gives int64 (no gradient)";
      break;
    case IntRule::kToFloat:
      s.description += "; int64 x is promoted to the float dtype";
      break;
    case IntRule::kRefused:
      break;
  }
  s.inputs = {{"x"}};
  if (spec.alpha_attr != nullptr) {
    s.attrs = {{spec.alpha_attr, AttrType::kFloat,
                AttrValue(spec.alpha_default), spec.alpha_description}};
  }
  if (spec.alg == algorithm::eltwise_gelu_erf) {
    s.attrs = {{"approximate", AttrType::kString,
                AttrValue(std::string("none")),
                "\"none\" (erf) or \"tanh\": 0.5·x·(1 + tanh(√(2/π)·(x + "
                "0.044715·x³)))"}};
  }
  s.create = [&spec](const OpConfig& c) { return EltwiseOp::Create(c, spec); };
  return s;
}

// One registration per row of the table.
const bool kRegistered = [] {
  for (const EltwiseSpec& spec : kSpecs) {
    OpRegistry::Global().Register(EltwiseSchema(spec));
  }
  return true;
}();

}  // namespace
}  // namespace gradserve
