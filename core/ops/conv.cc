// Conv1d and Conv2d: x [N, C, (H,) W] or unbatched [C, (H,) W], weight
// [F, C/groups, (kh,) kw], bias [F]; stride, padding (ints, "valid" or
// "same"), dilation, groups as in PyTorch; padding may also give each dim's
// before and after apart (ONNX's asymmetric pads).
//
// float32 runs oneDNN convolution forward, backward-data and backward-weights
// with format `any`: the primitives pick their (blocked) layouts, the output
// and dL/dx stay in them for the next layout-aware op, and inputs arrive
// reordered only where their layout differs. Weights and their gradients
// are plain on the outside. float64 (and empty batches) run direct loops,
// with a 1-d convolution seen as a 2-d one of height 1: the input gradient
// is the full convolution of dY with the weights, the weight gradient the
// filtering of x by dY.
#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/conv_geometry.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/ops/window.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::memory;

memory::desc AnyDesc(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, memory::format_tag::any);
}

class ConvOp : public Op {
 public:
  // `prepadded`: x arrives padded already (padding_mode other than zeros):
  // the convolution itself pads nothing.
  static absl::StatusOr<std::unique_ptr<ConvOp>> Create(const OpConfig& c,
                                                        int spatial,
                                                        bool prepadded) {
    // x, weight and bias all int64 give int64 (wrapping), as torch's
    // slow convolution; torch refuses int64 against float.
    const bool ints = AllInt64(c);
    if (!ints) {
      RETURN_IF_ERROR(c.ExpectFloat(0));
      RETURN_IF_ERROR(c.ExpectFloat(1));
    }
    // (Unbatched x [C, ...] arrives here as [1, C, ...].)
    RETURN_IF_ERROR(c.ExpectRankBetween(0, spatial + 1, spatial + 2));
    RETURN_IF_ERROR(c.ExpectRank(1, spatial + 2));
    const Shape& x = c.shape(0);
    const Shape& w = c.shape(1);
    auto op = std::make_unique<ConvOp>();
    op->spatial_ = spatial;
    const Attributes& a = c.attrs();
    ASSIGN_OR_RETURN(op->stride_,
                     a.GetIntsInRange("stride", spatial, 1, kMaxAttrExtent));
    ASSIGN_OR_RETURN(op->dilation_,
                     a.GetIntsInRange("dilation", spatial, 1, kMaxAttrExtent));
    RETURN_IF_ERROR(op->ReadPadding(c, w));
    if (prepadded) {
      op->padding_.assign(spatial, 0);
      op->padding_r_ = op->padding_;
      op->same_ = false;
    }
    op->groups_ = a.GetInt("groups");
    const int64_t g = op->groups_;
    if (g < 1) return a.Invalid("groups", ">= 1");
    if (x[1] < 1 || x[1] % g != 0) {
      return c.Error(c.Describe(0), " has ", x[1],
                     " channels, expected a positive multiple of groups = ", g);
    }
    if (w[0] % g != 0 || w[1] != x[1] / g) {
      return c.Error(c.Describe(1), " must be [F, C/groups = ", x[1] / g,
                     ", kernel...] with F a multiple of groups = ", g, ", got ",
                     ShapeToString(w));
    }
    if (c.has_input(2)) {
      if (!ints) RETURN_IF_ERROR(c.ExpectFloat(2));
      RETURN_IF_ERROR(c.ExpectShape(2, {w[0]}));
    }
    ASSIGN_OR_RETURN(
        std::vector<int64_t> spatial_out,
        WindowOutputDims(c, {Shape(w.begin() + 2, w.end()), op->stride_,
                             op->padding_, op->dilation_, op->padding_r_}));
    if (op->same_) {
      spatial_out.assign(x.begin() + 2, x.end());
    }
    Shape y = {x[0], w[0]};
    y.insert(y.end(), spatial_out.begin(), spatial_out.end());
    op->x_ = x;
    op->w_ = w;
    op->has_bias_ = c.has_input(2);
    op->outputs_ = {{ints ? DType::kInt64 : c.float_dtype(), y}};
    return op;
  }

  // Each spatial dim's padding before and after x.
  const std::vector<int64_t>& padding() const { return padding_; }
  const std::vector<int64_t>& padding_r() const { return padding_r_; }

  int64_t ForwardFlops() const override {
    int64_t per_output = 2 * w_[1];
    for (int d = 0; d < spatial_; ++d)
      per_output = MulSat(per_output, w_[2 + d]);
    return MulSat(per_output, outputs_[0].num_elements());
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[1]) s.inputs.push_back(0);  // dW filters x by dY
    if (needs_grad[0]) s.inputs.push_back(1);  // dx convolves dY with W
    return s;
  }

  bool HandlesLayouts() const override { return true; }
  std::shared_ptr<const Layout> OutputLayout(int) const override {
    return output_layout_;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0])) return absl::OkStatus();
    return CatchDnnl(node_, [&] {
      const auto& eng = CpuEngine();
      const auto alg = dnnl::algorithm::convolution_direct;
      memory::dims strides(stride_.begin(), stride_.end());
      memory::dims dilates, padding(padding_.begin(), padding_.end());
      const memory::dims padding_r(padding_r_.begin(), padding_r_.end());
      // A stride past the padded extent is never taken (one window): the
      // extent gives the same result, and oneDNN's avx512 kernels compute
      // weight gradients of 0 for strides near 2^31.
      for (size_t d = 0; d < strides.size(); ++d) {
        strides[d] =
            std::min(strides[d], x_[2 + d] + padding[d] + padding_r[d]);
      }
      for (int64_t d : dilation_) dilates.push_back(d - 1);  // 0 = dense
      const auto src = AnyDesc(DnnlDims(x_));
      const auto weights = AnyDesc(WeightDims());
      const auto dst = AnyDesc(DnnlDims(outputs_[0].shape));
      const auto bias = PlainDesc({w_[0]});
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      auto fwd_desc = has_bias_ ? dnnl::convolution_forward::desc(
                                      kind, alg, src, weights, bias, dst,
                                      strides, dilates, padding, padding_r)
                                : dnnl::convolution_forward::desc(
                                      kind, alg, src, weights, dst, strides,
                                      dilates, padding, padding_r);
      dnnl::convolution_forward::primitive_desc fwd(fwd_desc, DefaultAttr(),
                                                    eng);
      forward_ = MakePrimitive<dnnl::convolution_forward>(fwd);
      src_desc_ = fwd.src_desc();
      weights_desc_ = fwd.weights_desc();
      output_layout_ = std::make_shared<Layout>(Layout{fwd.dst_desc()});
      if (!info.backward_will_run) return absl::OkStatus();
      if (info.needs_grad[0]) {
        dnnl::convolution_backward_data::primitive_desc pd(
            dnnl::convolution_backward_data::desc(
                alg, src, weights, dst, strides, dilates, padding, padding_r),
            DefaultAttr(), eng, fwd);
        backward_data_ = MakePrimitive<dnnl::convolution_backward_data>(pd);
        bd_diff_dst_ = pd.diff_dst_desc();
        bd_weights_ = pd.weights_desc();
        bd_diff_src_ = pd.diff_src_desc();
      }
      // db alone is a sum of dY (Backward): backward-weights serves dW.
      if (info.needs_grad[1]) {
        auto desc = has_bias_ ? dnnl::convolution_backward_weights::desc(
                                    alg, src, weights, bias, dst, strides,
                                    dilates, padding, padding_r)
                              : dnnl::convolution_backward_weights::desc(
                                    alg, src, weights, dst, strides, dilates,
                                    padding, padding_r);
        dnnl::convolution_backward_weights::primitive_desc pd(
            desc, DefaultAttr(), eng, fwd);
        backward_weights_ =
            MakePrimitive<dnnl::convolution_backward_weights>(pd);
        bw_src_ = pd.src_desc();
        bw_diff_dst_ = pd.diff_dst_desc();
        bw_diff_weights_ = pd.diff_weights_desc();
      }
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    if (!forward_) {
      Tensor& y = ctx.AllocateOutput(0);
      DispatchNumeric(y.dtype(), [&](auto zero) {
        ForwardLoop<decltype(zero)>(ctx.input(0), ctx.input(1), ctx.input(2),
                                    y);
      });
      return absl::OkStatus();
    }
    return CatchDnnl(node_, [&] {
      DnnlRunner& dnnl = ctx.dnnl();
      Tensor src = Reordered(ctx.input(0), src_desc_, dnnl);
      Tensor weights =
          Reordered(ctx.input(1), PlainWeightDesc(), weights_desc_, dnnl);
      Tensor y = EmptyIn(outputs_[0], output_layout_->desc);
      DnnlArgs args = {{DNNL_ARG_SRC, WrapTensor(src_desc_, src)},
                       {DNNL_ARG_WEIGHTS, WrapTensor(weights_desc_, weights)},
                       {DNNL_ARG_DST, WrapTensor(output_layout_->desc, y)}};
      if (has_bias_) {
        args[DNNL_ARG_BIAS] = WrapTensor(PlainDesc({w_[0]}), ctx.input(2));
      }
      dnnl.Execute(*forward_, args);
      ctx.SetOutput(0, std::move(y));
      return absl::OkStatus();
    });
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const bool need_dx = ctx.needs_grad(0), need_dw = ctx.needs_grad(1);
    const bool need_db = has_bias_ && ctx.needs_grad(2);
    const DType dtype = outputs_[0].dtype;
    if (!forward_) {
      Tensor dx = need_dx ? Tensor::Zeros(dtype, x_) : Tensor();
      Tensor dw = need_dw ? Tensor::Zeros(dtype, w_) : Tensor();
      Tensor db = need_db ? Tensor::Zeros(dtype, {w_[0]}) : Tensor();
      DispatchFloat(dtype, [&](auto zero) {
        BackwardLoop<decltype(zero)>(ctx.grad_output(0), ctx.input(0),
                                     ctx.input(1), dx, dw, db);
      });
      if (need_dx) ctx.SetGradInput(0, std::move(dx));
      if (need_dw) ctx.SetGradInput(1, std::move(dw));
      if (need_db) ctx.SetGradInput(2, std::move(db));
      return absl::OkStatus();
    }
    return CatchDnnl(node_, [&] {
      DnnlRunner& dnnl = ctx.dnnl();
      const Tensor& dy = ctx.grad_output(0);
      if (need_dx) {
        Tensor diff_dst = Reordered(dy, bd_diff_dst_, dnnl);
        Tensor weights =
            Reordered(ctx.input(1), PlainWeightDesc(), bd_weights_, dnnl);
        Tensor dx = EmptyIn({dtype, x_}, bd_diff_src_);
        dnnl.Execute(*backward_data_,
                     {{DNNL_ARG_DIFF_DST, WrapTensor(bd_diff_dst_, diff_dst)},
                      {DNNL_ARG_WEIGHTS, WrapTensor(bd_weights_, weights)},
                      {DNNL_ARG_DIFF_SRC, WrapTensor(bd_diff_src_, dx)}});
        ctx.SetGradInput(0, std::move(dx));
      }
      if (need_db && !need_dw) {
        Tensor db = Tensor::Zeros(dtype, {w_[0]});
        Tensor none;
        BackwardLoop<float>(Plain(dy, dnnl), ctx.input(0), ctx.input(1), none,
                            none, db);
        ctx.SetGradInput(2, std::move(db));
      }
      if (need_dw) {
        Tensor diff_dst = Reordered(dy, bw_diff_dst_, dnnl);
        Tensor src = Reordered(ctx.input(0), bw_src_, dnnl);
        Tensor dw_blocked = EmptyIn({dtype, w_}, bw_diff_weights_);
        Tensor db = Tensor::Empty(dtype, {w_[0]});
        DnnlArgs args = {
            {DNNL_ARG_DIFF_DST, WrapTensor(bw_diff_dst_, diff_dst)},
            {DNNL_ARG_SRC, WrapTensor(bw_src_, src)},
            {DNNL_ARG_DIFF_WEIGHTS, WrapTensor(bw_diff_weights_, dw_blocked)}};
        if (has_bias_)
          args[DNNL_ARG_DIFF_BIAS] = WrapTensor(PlainDesc({w_[0]}), db);
        dnnl.Execute(*backward_weights_, args);
        if (need_dw) {
          ctx.SetGradInput(1, Reordered(dw_blocked, bw_diff_weights_,
                                        PlainWeightDesc(), dnnl));
        }
        if (need_db) ctx.SetGradInput(2, std::move(db));
      }
      return absl::OkStatus();
    });
  }

 private:
  // padding: ints (the same on both sides, or each dim's before and then
  // each dim's after), "valid" (none) or "same" (y
  // as large as x, stride 1: dilation·(k − 1) zeros split with the odd one
  // on the right, as PyTorch pads an even kernel).
  absl::Status ReadPadding(const OpConfig& c, const Shape& w) {
    const Attributes& a = c.attrs();
    if (!a.IsString("padding")) {
      ASSIGN_OR_RETURN(Padding p,
                       gradserve::ReadPadding(a, "padding", spatial_));
      padding_ = std::move(p.begin);
      padding_r_ = std::move(p.end);
      return absl::OkStatus();
    }
    const std::string& mode = a.GetString("padding");
    padding_.assign(spatial_, 0);
    padding_r_ = padding_;
    if (mode == "valid") return absl::OkStatus();
    if (mode != "same") {
      return a.Invalid("padding", "ints, \"valid\" or \"same\"");
    }
    for (int64_t s : stride_) {
      if (s != 1) {
        return a.Invalid("padding", "ints or \"valid\" with stride " +
                                        ShapeToString(stride_) +
                                        " (\"same\" needs stride 1, as in "
                                        "PyTorch)");
      }
    }
    same_ = true;
    for (int d = 0; d < spatial_; ++d) {
      const std::optional<int64_t> total =
          CheckedMul(dilation_[d], w[2 + d] - 1);
      if (!total || *total > kMaxAttrExtent) {
        return a.Invalid("dilation", "a dilated kernel extent within int");
      }
      padding_[d] = *total / 2;
      padding_r_[d] = *total - padding_[d];
    }
    return absl::OkStatus();
  }

  // oneDNN's weight dims: [groups, F/groups, C/groups, k...] when grouped.
  memory::dims WeightDims() const {
    memory::dims dims = DnnlDims(w_);
    if (groups_ > 1) {
      dims[0] /= groups_;
      dims.insert(dims.begin(), groups_);
    }
    return dims;
  }
  // The plain weight tensor seen with those dims (the same bytes).
  memory::desc PlainWeightDesc() const {
    const memory::dims dims = WeightDims();
    return PlainDesc(Shape(dims.begin(), dims.end()));
  }

  ConvGeometry Geometry() const {
    return ConvGeometry::Of(spatial_, x_, w_, outputs_[0].shape, stride_,
                            padding_, dilation_, groups_);
  }

  template <typename T>
  void ForwardLoop(const Tensor& x, const Tensor& w, const Tensor& b,
                   Tensor& y) const {
    FillPerChannel(has_bias_ ? b.data<T>() : nullptr, x_[0], w_[0],
                   y.num_elements(), y.data<T>());
    Geometry().Convolve(x.data<T>(), w.data<T>(), y.data<T>());
  }

  template <typename T>
  void BackwardLoop(const Tensor& dy, const Tensor& x, const Tensor& w,
                    Tensor& dx, Tensor& dw, Tensor& db) const {
    const T* g = dy.data<T>();
    if (dx.defined()) Geometry().InputGradient(g, w.data<T>(), dx.data<T>());
    if (dw.defined()) Geometry().WeightGradient(g, x.data<T>(), dw.data<T>());
    if (db.defined()) {
      SumPerChannel(g, x_[0], w_[0], dy.num_elements(), db.data<T>());
    }
  }

  int spatial_ = 2;
  Shape x_, w_;
  // padding_ is each dim's left (top) padding, padding_r_ its right.
  std::vector<int64_t> stride_, padding_, padding_r_, dilation_;
  bool same_ = false;
  int64_t groups_ = 1;
  bool has_bias_ = false;
  std::optional<DnnlPrimitive> forward_, backward_data_, backward_weights_;
  memory::desc src_desc_, weights_desc_;
  memory::desc bd_diff_dst_, bd_weights_, bd_diff_src_;
  memory::desc bw_src_, bw_diff_dst_, bw_diff_weights_;
  std::shared_ptr<const Layout> output_layout_;
};

// padding_mode "reflect", "replicate" or "circular", as torch.nn.Conv1d/2d:
// x padded so (torch.nn.functional.pad's modes), then convolved without
// padding; dL/dx folds the padded input's gradient back onto the elements
// each padded one copies. Plain at its edges.
class PaddedInputOp : public WrappingOp {
 public:
  PaddedInputOp(std::unique_ptr<Op> inner,
                std::vector<std::vector<int64_t>> maps, Shape x, Shape padded)
      : WrappingOp(std::move(inner)),
        maps_(std::move(maps)),
        x_(std::move(x)),
        padded_(std::move(padded)) {
    outputs_ = this->inner().outputs();
    // The padded x and its gradient, and a plain copy of y.
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    set_extra_bytes(CheckedAdd(MulSat(MulSat(2, ElementCount(padded_)), dsize),
                               outputs_[0].num_bytes())
                        .value_or(std::numeric_limits<int64_t>::max()));
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    ctx.ReplaceInput(0, Padded(ctx.input(0)));
    RETURN_IF_ERROR(ForwardInner(ctx));
    Tensor& y = ctx.mutable_output(0);
    y = Plain(y, ctx.dnnl());
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (ctx.input(0).defined()) ctx.ReplaceInput(0, Padded(ctx.input(0)));
    RETURN_IF_ERROR(BackwardInner(ctx));
    Tensor& dx = ctx.mutable_grad_input(0);
    if (dx.defined()) dx = Folded(Plain(dx, ctx.dnnl()));
    return absl::OkStatus();
  }

 private:
  // Calls f(padded element, x element) for every element of the padded x.
  template <typename F>
  void ForEachCopy(F&& f) const {
    const bool two = maps_.size() == 2;
    const std::vector<int64_t> rows = two ? maps_[0] : std::vector<int64_t>{0};
    const std::vector<int64_t>& cols = maps_.back();
    const int64_t h = two ? x_[2] : 1, w = x_.back();
    const int64_t planes = x_[0] * x_[1];
    int64_t p = 0;
    for (int64_t plane = 0; plane < planes; ++plane) {
      for (int64_t r : rows) {
        for (int64_t c : cols) f(p++, (plane * h + r) * w + c);
      }
    }
  }

  Tensor Padded(const Tensor& x) const {
    Tensor out = Tensor::Empty(x.dtype(), padded_);
    DispatchNumeric(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* in = x.data<T>();
      T* o = out.data<T>();
      ForEachCopy([&](int64_t p, int64_t i) { o[p] = in[i]; });
    });
    return out;
  }

  Tensor Folded(const Tensor& grad) const {
    Tensor out = Tensor::Zeros(grad.dtype(), x_);
    DispatchFloat(grad.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* g = grad.data<T>();
      T* o = out.data<T>();
      ForEachCopy([&](int64_t p, int64_t i) { o[i] += g[p]; });
    });
    return out;
  }

  std::vector<std::vector<int64_t>> maps_;  // per spatial dim: source index
  Shape x_, padded_;
};

// For each padded position of one spatial dim of extent n (before pads
// `before`, after `after`), the element of x it copies.
absl::StatusOr<std::vector<int64_t>> PadMap(const OpConfig& c,
                                            const std::string& mode, int64_t n,
                                            int64_t before, int64_t after) {
  // torch.nn.functional.pad: reflect needs pads below the extent,
  // circular at most the extent, replicate a non-empty one.
  const int64_t most = std::max(before, after);
  const int64_t least = mode == "reflect"    ? most + 1
                        : mode == "circular" ? std::max<int64_t>(most, 1)
                                             : 1;
  if (n < least) {
    return c.Error("padding ", most, " with padding_mode \"", mode,
                   "\" needs a spatial extent of at least ", least, ", got ", n,
                   " (", c.Describe(0), " ", ShapeToString(c.shape(0)), ")");
  }
  std::vector<int64_t> map;
  for (int64_t i = -before; i < n + after; ++i) {
    if (mode == "reflect") {
      map.push_back(i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
    } else if (mode == "replicate") {
      map.push_back(std::clamp<int64_t>(i, 0, n - 1));
    } else {
      map.push_back(((i % n) + n) % n);
    }
  }
  return map;
}

absl::StatusOr<std::unique_ptr<Op>> CreateConv(const OpConfig& c, int spatial) {
  const std::string& mode = c.attrs().GetString("padding_mode");
  ASSIGN_OR_RETURN(std::unique_ptr<ConvOp> conv,
                   ConvOp::Create(c, spatial, false));
  if (mode == "zeros") return std::unique_ptr<Op>(std::move(conv));
  if (mode != "reflect" && mode != "replicate" && mode != "circular") {
    return c.attrs().Invalid(
        "padding_mode",
        "\"zeros\", \"reflect\", \"replicate\" or \"circular\"");
  }
  const Shape& x = c.shape(0);
  std::vector<std::vector<int64_t>> maps;
  Shape padded = {x[0], x[1]};
  for (int d = 0; d < spatial; ++d) {
    ASSIGN_OR_RETURN(
        std::vector<int64_t> map,
        PadMap(c, mode, x[2 + d], conv->padding()[d], conv->padding_r()[d]));
    padded.push_back(static_cast<int64_t>(map.size()));
    maps.push_back(std::move(map));
  }
  std::vector<std::optional<TensorMeta>> inputs = c.inputs();
  inputs[0]->shape = padded;
  ASSIGN_OR_RETURN(std::unique_ptr<ConvOp> inner,
                   ConvOp::Create(c.WithInputs(inputs), spatial, true));
  return std::unique_ptr<Op>(std::make_unique<PaddedInputOp>(
      std::move(inner), std::move(maps), x, std::move(padded)));
}

OpSchema ConvSchema(int spatial) {
  const bool two = spatial == 2;
  const AttrValue one(std::vector<int64_t>(spatial, 1));
  const AttrValue zero(std::vector<int64_t>(spatial, 0));
  const AttrType type = AttrType::kInts;
  OpSchema s;
  s.name = two ? "Conv2d" : "Conv1d";
  s.description =
      two ? "2-d convolution (cross-correlation) of x [N, C, H, W] (or [C, H, "
            "W]) "
            "with weight [F, C/groups, kh, kw], plus bias [F]"
          : "1-d convolution (cross-correlation) of x [N, C, L] (or [C, L]) "
            "with weight [F, C/groups, k], plus bias [F]";
  s.description += "; all int64 gives int64 (no gradient)";
  s.inputs = {{"x"}, {"weight"}, {"bias", /*optional=*/true}};
  const std::string per_dim = two ? " (one int, or one per spatial dim)" : "";
  s.attrs = {
      {"stride", type, one, "step between windows" + per_dim},
      {"padding", type, zero,
       "zeros added on each side" + per_dim +
           ", or each dim's before then each dim's after (" +
           (two ? "4" : "2") +
           " ints, ONNX's pads), or \"valid\" (none) or \"same\" (y as "
           "large as x; stride 1)",
       /*or_string=*/true},
      {"dilation", type, one, "spacing between kernel taps" + per_dim},
      {"padding_mode", AttrType::kString, AttrValue(std::string("zeros")),
       "\"zeros\", or \"reflect\", \"replicate\", \"circular\" "
       "(x padded so, as torch.nn.Conv1d/2d's padding_mode)"},
      {"groups", AttrType::kInt, AttrValue(int64_t{1}),
       "channel groups; C and F are multiples of it"}};
  s.create = [spatial](const OpConfig& c) {
    return CreateMaybeUnbatched(
        c, spatial + 2, {0},
        [spatial](const OpConfig& b) { return CreateConv(b, spatial); });
  };
  return s;
}

REGISTER_OP(ConvSchema(1));
REGISTER_OP(ConvSchema(2));

}  // namespace
}  // namespace gradserve
