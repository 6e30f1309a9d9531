// Add, Sub, Mul, Div with NumPy broadcasting.
//
// float32 forward runs oneDNN's binary primitive, which broadcasts only its
// second source against a first source of the output's shape: Add and Mul
// swap their operands when `a` is the one broadcast; Sub and Div with a
// broadcast `a`, and both operands broadcast, run the loop. Backward sums
// each input's gradient over the dims it was broadcast along (a Reduction,
// accumulated in double):
//   Add: dA = Σ dY            Sub: dB = -Σ dY
//   Mul: dA = Σ dY·B          dB = Σ dY·A
//   Div: dA = Σ dY/B          dB = -Σ (dY/B)·Y   (= -Σ dY·A/B²)
// where the products with a broadcast operand are oneDNN binaries too.
// As in PyTorch, Add and Sub take `alpha` (y = a ± alpha·b: the loop, dB
// scaled by alpha), and Div a `rounding_mode`, "trunc" or "floor" (the loop,
// rounding as torch.div does; no gradient: dA = dB = 0, as torch's).
//
// int64 operands as torch: two int64 tensors give int64 (wrapping on
// overflow; alpha must then be integral; Div rounds, "trunc" or "floor",
// and an integer division by zero is INVALID_ARGUMENT), or float for Div's
// true division; an int64 operand against a float one is promoted to the
// float dtype. Only float operands have gradients.
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "core/checked_math.h"
#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/broadcast.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

enum class Kind { kAdd, kSub, kMul, kDiv };

dnnl::algorithm BinaryAlg(Kind kind) {
  switch (kind) {
    case Kind::kAdd:
      return dnnl::algorithm::binary_add;
    case Kind::kSub:
      return dnnl::algorithm::binary_sub;
    case Kind::kMul:
      return dnnl::algorithm::binary_mul;
    case Kind::kDiv:
      return dnnl::algorithm::binary_div;
  }
  return dnnl::algorithm::undef;
}

template <typename T>
T Apply(Kind kind, T x, T y) {
  switch (kind) {
    case Kind::kAdd:
      return x + y;
    case Kind::kSub:
      return x - y;
    case Kind::kMul:
      return x * y;
    case Kind::kDiv:
      return x / y;
  }
  return T(0);
}

enum class Rounding { kNone, kTrunc, kFloor };

// torch.div(x, y, rounding_mode="floor") for floats, step by step as
// PyTorch's CPU kernel (c10's div_floor_floating) computes it.
template <typename T>
T FloorDivide(T x, T y) {
  if (y == 0) return x / y;
  const T mod = std::fmod(x, y);
  T div = (x - mod) / y;
  if (mod != 0 && (y < 0) != (mod < 0)) div -= T(1);
  if (div == 0) return std::copysign(T(0), x / y);
  T floored = std::floor(div);
  if (div - floored > T(0.5)) floored += T(1);
  return floored;
}

int64_t ApplyInt(Kind kind, Rounding rounding, int64_t x, int64_t y) {
  switch (kind) {
    case Kind::kAdd:
      return WrapAdd(x, y);
    case Kind::kSub:
      return WrapSub(x, y);
    case Kind::kMul:
      return WrapMul(x, y);
    case Kind::kDiv:
      break;
  }
  return rounding == Rounding::kFloor ? FloorDiv(x, y) : TruncDiv(x, y);
}

template <typename T>
T Divide(Rounding rounding, T x, T y) {
  switch (rounding) {
    case Rounding::kNone:
      break;
    case Rounding::kTrunc:
      return std::trunc(x / y);
    case Rounding::kFloor:
      return FloorDivide(x, y);
  }
  return x / y;
}

// A oneDNN binary primitive whose first source and destination have the
// output's shape and whose second source broadcasts.
struct Binary {
  DnnlPrimitive primitive;
  Shape src1;

  static Binary Make(dnnl::algorithm alg, const Shape& out, const Shape& src1) {
    dnnl::binary::primitive_desc pd(
        dnnl::binary::desc(alg, PlainDesc(out), PlainDesc(src1),
                           PlainDesc(out)),
        DefaultAttr(), CpuEngine());
    return {MakePrimitive<dnnl::binary>(pd), src1};
  }

  absl::Status Run(absl::string_view node, DnnlRunner& dnnl, const Tensor& x,
                   const Tensor& y, Tensor& out) const {
    return ExecuteDnnl(
        dnnl, node, primitive,
        {{DNNL_ARG_SRC_0, WrapTensor(PlainDesc(out.shape()), x)},
         {DNNL_ARG_SRC_1, WrapTensor(PlainDesc(src1), y)},
         {DNNL_ARG_DST, WrapTensor(PlainDesc(out.shape()), out)}});
  }
};

class BinaryOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    Kind kind) {
    for (int i : {0, 1}) {
      RETURN_IF_ERROR(IsFloating(c.input(i).dtype) ? c.ExpectFloat(i)
                                                   : c.ExpectInt64(i));
    }
    std::optional<Shape> out = BroadcastShape(c.shape(0), c.shape(1));
    if (!out) {
      return c.Error(c.Describe(0), " ", ShapeToString(c.shape(0)), " and ",
                     c.Describe(1), " ", ShapeToString(c.shape(1)),
                     " do not broadcast");
    }
    auto op = std::make_unique<BinaryOp>();
    op->kind_ = kind;
    RETURN_IF_ERROR(op->ReadOptions(c));
    RETURN_IF_ERROR(op->ReadDtypes(c));
    op->a_ = c.shape(0);
    op->b_ = c.shape(1);
    op->out_ = *out;
    op->a_padded_ = PadToRank(op->a_, out->size());
    op->b_padded_ = PadToRank(op->b_, out->size());
    op->sum_a_ = Reduction(*out, BroadcastDims(op->a_, *out));
    op->sum_b_ = Reduction(*out, BroadcastDims(op->b_, *out));
    op->outputs_ = {{op->IntOutput() ? DType::kInt64 : c.float_dtype(), *out}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override { return ElementCount(out_); }

  // Backward's output-shaped products beyond the input gradients: Mul's for
  // each input it sums down to a broadcast shape; Div's dY/B and (dY/B)·Y,
  // which it needs whichever gradient is wanted.
  // An int64 operand of a float y is promoted to a float copy.
  int64_t ExtraBytes() const override {
    const int64_t bytes = outputs_[0].num_bytes();
    int64_t promoted = 0;
    if (!IntOutput()) {
      const int64_t size = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
      if (int_[0]) promoted = MulSat(ElementCount(a_), size);
      if (int_[1]) promoted = SumSat(promoted, MulSat(ElementCount(b_), size));
    }
    switch (kind_) {
      case Kind::kMul:
        return SumSat(promoted, bytes * ((a_ != out_) + (b_ != out_)));
      case Kind::kDiv:
        return SumSat(promoted, 2 * bytes);
      case Kind::kAdd:
      case Kind::kSub:
        break;
    }
    return promoted;
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (rounding_ != Rounding::kNone) return s;  // no gradient
    if (kind_ == Kind::kMul) {
      if (needs_grad[1]) s.inputs.push_back(0);
      if (needs_grad[0]) s.inputs.push_back(1);
    } else if (kind_ == Kind::kDiv) {
      s.inputs.push_back(1);
      if (needs_grad[1]) s.outputs.push_back(0);
    }
    return s;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    const DType dtype = outputs_[0].dtype;
    const bool dnnl = RunsOnDnnl({dtype, out_}) &&
                      out_.size() <= DNNL_MAX_NDIMS && !int_[0] && !int_[1];
    if (!dnnl || alpha_ != 1 || rounding_ != Rounding::kNone) {
      return absl::OkStatus();  // the loops
    }
    return CatchDnnl(node_, [&] {
      const dnnl::algorithm alg = BinaryAlg(kind_);
      const bool commutes = kind_ == Kind::kAdd || kind_ == Kind::kMul;
      if (a_padded_ == out_) {
        forward_ = Binary::Make(alg, out_, b_padded_);
      } else if (b_padded_ == out_ && commutes) {
        forward_ = Binary::Make(alg, out_, a_padded_);
        swapped_ = true;
      }
      if (!info.backward_will_run) return absl::OkStatus();
      using dnnl::algorithm;
      if (kind_ == Kind::kMul) {
        times_b_ = Binary::Make(algorithm::binary_mul, out_, b_padded_);
        times_a_ = Binary::Make(algorithm::binary_mul, out_, a_padded_);
      } else if (kind_ == Kind::kDiv) {
        over_b_ = Binary::Make(algorithm::binary_div, out_, b_padded_);
        times_y_ = Binary::Make(algorithm::binary_mul, out_, out_);
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    if (IntOutput()) return IntForward(ctx);
    const Tensor a = Promoted(ctx, 0);
    const Tensor b = Promoted(ctx, 1);
    Tensor& y = ctx.AllocateOutput(0);
    if (forward_) {
      return swapped_ ? forward_->Run(node_, ctx.dnnl(), b, a, y)
                      : forward_->Run(node_, ctx.dnnl(), a, b, y);
    }
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* ap = a.data<T>();
      const T* bp = b.data<T>();
      T* yp = y.data<T>();
      const T alpha = static_cast<T>(alpha_);
      ForEachBroadcast(out_, a_, b_, [&](int64_t o, int64_t i, int64_t j) {
        yp[o] = kind_ == Kind::kDiv ? Divide(rounding_, ap[i], bp[j])
                                    : Apply(kind_, ap[i], alpha * bp[j]);
      });
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (rounding_ != Rounding::kNone) {
      // Rounded quotients are piecewise constant: torch's gradient is 0.
      const DType dtype = outputs_[0].dtype;
      if (ctx.needs_grad(0)) ctx.SetGradInput(0, Tensor::Zeros(dtype, a_));
      if (ctx.needs_grad(1)) ctx.SetGradInput(1, Tensor::Zeros(dtype, b_));
      return absl::OkStatus();
    }
    const Tensor& dy = ctx.grad_output(0);
    // The full-shape gradient of each input, before summing it down.
    Tensor full_a = dy, full_b = dy;
    switch (kind_) {
      case Kind::kAdd:
      case Kind::kSub:
        break;
      case Kind::kMul:
        if (ctx.needs_grad(0)) {
          ASSIGN_OR_RETURN(
              full_a, Product(ctx, times_b_, dy, Promoted(ctx, 1), b_, false));
        }
        if (ctx.needs_grad(1)) {
          ASSIGN_OR_RETURN(
              full_b, Product(ctx, times_a_, dy, Promoted(ctx, 0), a_, false));
        }
        break;
      case Kind::kDiv: {
        ASSIGN_OR_RETURN(full_a,
                         Product(ctx, over_b_, dy, Promoted(ctx, 1), b_, true));
        if (ctx.needs_grad(1)) {
          ASSIGN_OR_RETURN(full_b, Product(ctx, times_y_, full_a, ctx.output(0),
                                           out_, false));
        }
        break;
      }
    }
    if (ctx.needs_grad(0)) ctx.SetGradInput(0, SumTo(sum_a_, full_a, a_, 1));
    if (ctx.needs_grad(1)) {
      ctx.SetGradInput(
          1, SumTo(sum_b_, full_b, b_, (NegatesB() ? -1 : 1) * alpha_));
    }
    return absl::OkStatus();
  }

 private:
  // Add's and Sub's alpha, Div's rounding_mode.
  absl::Status ReadOptions(const OpConfig& c) {
    if (kind_ == Kind::kAdd || kind_ == Kind::kSub) {
      alpha_ = c.attrs().GetFloat("alpha");
    }
    if (kind_ != Kind::kDiv) return absl::OkStatus();
    const std::string& mode = c.attrs().GetString("rounding_mode");
    if (mode == "trunc") {
      rounding_ = Rounding::kTrunc;
    } else if (mode == "floor") {
      rounding_ = Rounding::kFloor;
    } else if (!mode.empty()) {
      return c.attrs().Invalid("rounding_mode",
                               "\"\" (true division), \"trunc\" or \"floor\"");
    }
    return absl::OkStatus();
  }

  // Which operands are int64; alpha must be integral when both are (torch:
  // "For integral input tensors, argument alpha must not be a floating
  // point number").
  absl::Status ReadDtypes(const OpConfig& c) {
    int_ = {c.input(0).dtype == DType::kInt64,
            c.input(1).dtype == DType::kInt64};
    if (IntOutput() && (alpha_ != std::trunc(alpha_) || !FitsInt64(alpha_))) {
      return c.attrs().Invalid(
          "alpha", absl::StrCat("an integer for int64 ", c.Describe(0), " and ",
                                c.Describe(1)));
    }
    error_prefix_ = std::string(c.Error().message());
    divisor_ = c.Describe(1);
    return absl::OkStatus();
  }

  // int64 in, int64 out: everything but Div's true division.
  bool IntOutput() const {
    return int_[0] && int_[1] &&
           (kind_ != Kind::kDiv || rounding_ != Rounding::kNone);
  }

  // Input i in the output's float dtype (an int64 operand promoted).
  Tensor Promoted(const ForwardContext& ctx, int i) const {
    return int_[i] ? ctx.input(i).ToFloating(outputs_[0].dtype) : ctx.input(i);
  }
  Tensor Promoted(const BackwardContext& ctx, int i) const {
    return int_[i] ? ctx.input(i).ToFloating(outputs_[0].dtype) : ctx.input(i);
  }

  absl::Status IntForward(ForwardContext& ctx) const {
    const int64_t* ap = ctx.input(0).data<int64_t>();
    const int64_t* bp = ctx.input(1).data<int64_t>();
    if (kind_ == Kind::kDiv && ElementCount(out_) > 0) {
      for (int64_t j = 0; j < ElementCount(b_); ++j) {
        if (bp[j] == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              error_prefix_, "integer division by zero: ", divisor_,
              " is 0 at flat index ", j));
        }
      }
    }
    Tensor& y = ctx.AllocateOutput(0);
    int64_t* yp = y.data<int64_t>();
    const int64_t alpha = static_cast<int64_t>(alpha_);
    ForEachBroadcast(out_, a_, b_, [&](int64_t o, int64_t i, int64_t j) {
      const int64_t bj = kind_ == Kind::kDiv ? bp[j] : WrapMul(alpha, bp[j]);
      yp[o] = ApplyInt(kind_, rounding_, ap[i], bj);
    });
    return absl::OkStatus();
  }

  // dB carries a minus sign for Sub and Div.
  bool NegatesB() const { return kind_ == Kind::kSub || kind_ == Kind::kDiv; }

  // g·x (or g/x) at the output's shape, x of `x_shape` broadcasting.
  absl::StatusOr<Tensor> Product(BackwardContext& ctx,
                                 const std::optional<Binary>& primitive,
                                 const Tensor& g, const Tensor& x,
                                 const Shape& x_shape, bool divide) const {
    Tensor out = Tensor::Empty(g.dtype(), out_);
    if (primitive) {
      RETURN_IF_ERROR(primitive->Run(node_, ctx.dnnl(), g, x, out));
      return out;
    }
    DispatchFloat(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = g.data<T>();
      const T* xp = x.data<T>();
      T* op = out.data<T>();
      ForEachBroadcast(out_, out_, x_shape, [&](int64_t o, int64_t, int64_t j) {
        op[o] = divide ? gp[o] / xp[j] : gp[o] * xp[j];
      });
    });
    return out;
  }

  Kind kind_ = Kind::kAdd;
  std::array<bool, 2> int_ = {false, false};
  std::string error_prefix_, divisor_;
  double alpha_ = 1;
  Rounding rounding_ = Rounding::kNone;
  Shape a_, b_, out_, a_padded_, b_padded_;
  bool swapped_ = false;
  std::optional<Binary> forward_, times_a_, times_b_, over_b_, times_y_;
  Reduction sum_a_, sum_b_;
};

OpSchema BinarySchema(const std::string& name, Kind kind,
                      const std::string& formula) {
  OpSchema s;
  s.name = name;
  s.description = formula +
                  ", with NumPy broadcasting; int64 operands as torch (int64 "
                  "out for two int64 but Div's true division, else the "
                  "float dtype)";
  s.inputs = {{"a"}, {"b"}};
  if (kind == Kind::kAdd || kind == Kind::kSub) {
    s.attrs = {{"alpha", AttrType::kFloat, AttrValue(1.0),
                "the factor of b, as torch.add/sub's alpha"}};
  } else if (kind == Kind::kDiv) {
    s.attrs = {{"rounding_mode", AttrType::kString, AttrValue(std::string()),
                "\"\" (true division), \"trunc\" or \"floor\" (no "
                "gradient), as torch.div's"}};
  }
  s.create = [kind](const OpConfig& c) { return BinaryOp::Create(c, kind); };
  return s;
}

REGISTER_OP(BinarySchema("Add", Kind::kAdd, "y = a + alpha·b"));
REGISTER_OP(BinarySchema("Sub", Kind::kSub, "y = a - alpha·b"));
REGISTER_OP(BinarySchema("Mul", Kind::kMul, "y = a · b"));
REGISTER_OP(BinarySchema("Div", Kind::kDiv, "y = a / b"));

}  // namespace
}  // namespace gradserve
