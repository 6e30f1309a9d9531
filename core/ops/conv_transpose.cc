// ConvTranspose1d and ConvTranspose2d: x [N, C_in, (H,) W] or unbatched
// [C_in, (H,) W], weight [C_in, C_out/groups, (kh,) kw] (torch's layout),
// bias [C_out]; stride, padding, output_padding, dilation and groups as
// torch.nn.functional.conv_transpose1d/2d: each spatial extent becomes
// (in − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.
//
// float32 runs oneDNN deconvolution forward, backward-data and
// backward-weights on plain x and y (a 1-d one as 2-d of height 1), the
// weights reordered into the primitives' layouts; output_padding is the
// right padding's shortfall, padding − output_padding, as PyTorch's ideep
// path passes it. float64 and empty inputs run the loops of the
// convolution whose input gradient this is (conv_geometry.h).
#include <optional>
#include <string>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/conv_geometry.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::memory;

enum Input { kX = 0, kWeight = 1, kBias = 2 };

class ConvTransposeOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    int spatial) {
    // All int64 gives int64 (wrapping), as torch; int64 against float is
    // refused.
    const bool ints = AllInt64(c);
    if (!ints) {
      RETURN_IF_ERROR(c.ExpectFloat(kX));
      RETURN_IF_ERROR(c.ExpectFloat(kWeight));
    }
    RETURN_IF_ERROR(c.ExpectRank(kX, spatial + 2));
    RETURN_IF_ERROR(c.ExpectRank(kWeight, spatial + 2));
    auto op = std::make_unique<ConvTransposeOp>();
    op->spatial_ = spatial;
    RETURN_IF_ERROR(op->ReadAttributes(c));
    const Shape& x = c.shape(kX);
    const Shape& w = c.shape(kWeight);
    const int64_t g = op->groups_;
    if (x[1] != w[0] || w[0] % g != 0) {
      return c.Error(c.Describe(kWeight), " must be [C_in = ", x[1],
                     ", C_out/groups, kernel...] with C_in a multiple of "
                     "groups = ",
                     g, ", got ", ShapeToString(w));
    }
    const std::optional<int64_t> out_channels = CheckedMul(w[1], g);
    if (!out_channels) return c.TooLarge("C_out/groups · groups overflows");
    if (c.has_input(kBias)) {
      if (!ints) RETURN_IF_ERROR(c.ExpectFloat(kBias));
      RETURN_IF_ERROR(c.ExpectShape(kBias, {*out_channels}));
    }
    Shape y = {x[0], *out_channels};
    for (int d = 0; d < spatial; ++d) {
      ASSIGN_OR_RETURN(int64_t extent,
                       op->OutputExtent(c, d, x[2 + d], w[2 + d]));
      y.push_back(extent);
    }
    op->x_ = x;
    op->w_ = w;
    op->has_bias_ = c.has_input(kBias);
    op->outputs_ = {{ints ? DType::kInt64 : c.float_dtype(), y}};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    int64_t per_input = 2 * w_[1];
    for (int d = 0; d < spatial_; ++d) per_input = MulSat(per_input, w_[2 + d]);
    return MulSat(per_input, ElementCount(x_));
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[kWeight]) s.inputs.push_back(kX);
    if (needs_grad[kX]) s.inputs.push_back(kWeight);
    return s;
  }

  // oneDNN 2.6 refuses some dilated deconvolutions whose output_padding
  // makes the right padding negative: those run the loops in float32 too.
  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0]) || ElementCount(x_) == 0) {
      return absl::OkStatus();
    }
    if (!PrepareDnnl(info).ok()) {
      forward_.reset();
      backward_data_.reset();
      backward_weights_.reset();
    }
    return absl::OkStatus();
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    if (!forward_) {
      DispatchNumeric(y.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* yp = y.data<T>();
        const Shape& s = outputs_[0].shape;
        FillPerChannel(
            has_bias_ ? ctx.input(kBias).template data<T>() : nullptr, s[0],
            s[1], y.num_elements(), yp);
        // y is the input gradient of the convolution of y into x.
        Geometry().InputGradient(ctx.input(kX).template data<T>(),
                                 ctx.input(kWeight).template data<T>(), yp);
      });
      return absl::OkStatus();
    }
    return CatchDnnl(node_, [&] {
      DnnlRunner& dnnl = ctx.dnnl();
      Tensor weights =
          Reordered(ctx.input(kWeight), PlainWeightDesc(), fwd_weights_, dnnl);
      DnnlArgs args = {
          {DNNL_ARG_SRC, WrapTensor(PlainDesc(As2d(x_)), ctx.input(kX))},
          {DNNL_ARG_WEIGHTS, WrapTensor(fwd_weights_, weights)},
          // This op's own shape: under the unbatched wrapper y has the
          // node's shape, without the batch dim.
          {DNNL_ARG_DST, WrapTensor(PlainDesc(As2d(outputs_[0].shape)), y)}};
      if (has_bias_) {
        args[DNNL_ARG_BIAS] =
            WrapTensor(PlainDesc({outputs_[0].shape[1]}), ctx.input(kBias));
      }
      dnnl.Execute(*forward_, args);
      return absl::OkStatus();
    });
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const bool need_dx = ctx.needs_grad(kX), need_dw = ctx.needs_grad(kWeight);
    const bool need_db = has_bias_ && ctx.needs_grad(kBias);
    const DType dtype = outputs_[0].dtype;
    const Shape& y = outputs_[0].shape;
    // The loops add into zeros; oneDNN writes dx whole and dW blocked.
    Tensor dx = !need_dx   ? Tensor()
                : forward_ ? Tensor::Empty(dtype, x_)
                           : Tensor::Zeros(dtype, x_);
    Tensor dw = need_dw && !forward_ ? Tensor::Zeros(dtype, w_) : Tensor();
    Tensor db = need_db ? Tensor::Zeros(dtype, {y[1]}) : Tensor();
    const Tensor& dy = ctx.grad_output(0);
    if (!forward_) {
      DispatchFloat(dtype, [&](auto zero) {
        BackwardLoop<decltype(zero)>(dy, ctx.input(kX), ctx.input(kWeight), dx,
                                     dw, db);
      });
    } else {
      RETURN_IF_ERROR(CatchDnnl(node_, [&] {
        DnnlRunner& dnnl = ctx.dnnl();
        const auto diff_dst = WrapTensor(PlainDesc(As2d(y)), dy);
        if (need_dx) {
          Tensor weights = Reordered(ctx.input(kWeight), PlainWeightDesc(),
                                     bd_weights_, dnnl);
          dnnl.Execute(
              *backward_data_,
              {{DNNL_ARG_DIFF_DST, diff_dst},
               {DNNL_ARG_WEIGHTS, WrapTensor(bd_weights_, weights)},
               {DNNL_ARG_DIFF_SRC, WrapTensor(PlainDesc(As2d(x_)), dx)}});
        }
        if (need_dw) {
          Tensor blocked = EmptyIn({dtype, w_}, bw_diff_weights_);
          Tensor bias_grad =
              has_bias_ ? Tensor::Empty(dtype, {y[1]}) : Tensor();
          DnnlArgs args = {
              {DNNL_ARG_DIFF_DST, diff_dst},
              {DNNL_ARG_SRC, WrapTensor(PlainDesc(As2d(x_)), ctx.input(kX))},
              {DNNL_ARG_DIFF_WEIGHTS, WrapTensor(bw_diff_weights_, blocked)}};
          if (has_bias_) {
            args[DNNL_ARG_DIFF_BIAS] = WrapTensor(PlainDesc({y[1]}), bias_grad);
          }
          dnnl.Execute(*backward_weights_, args);
          // Into torch's plain [C_in, C_out/groups, k...], which oneDNN
          // sees as (g)iohw.
          dw = Tensor::Empty(dtype, w_);
          dnnl::reorder::primitive_desc pd(CpuEngine(), bw_diff_weights_,
                                           CpuEngine(), PlainWeightDesc(),
                                           DefaultAttr());
          dnnl.Execute(MakePrimitive<dnnl::reorder>(pd),
                       {{DNNL_ARG_FROM, WrapTensor(bw_diff_weights_, blocked)},
                        {DNNL_ARG_TO, WrapTensor(PlainWeightDesc(), dw)}});
          if (need_db) db = std::move(bias_grad);
        } else if (need_db) {
          Tensor none;
          BackwardLoop<float>(dy, Tensor(), Tensor(), none, none, db);
        }
        return absl::OkStatus();
      }));
    }
    if (need_dx) ctx.SetGradInput(kX, std::move(dx));
    if (need_dw) ctx.SetGradInput(kWeight, std::move(dw));
    if (need_db) ctx.SetGradInput(kBias, std::move(db));
    return absl::OkStatus();
  }

 private:
  absl::Status PrepareDnnl(const PrepareInfo& info) {
    return CatchDnnl(node_, [&] {
      const auto& eng = CpuEngine();
      const auto alg = dnnl::algorithm::deconvolution_direct;
      memory::dims strides, dilates, padding, padding_r;
      for (int k = 0; k < spatial_; ++k) {
        strides.push_back(stride_[k]);
        dilates.push_back(dilation_[k] - 1);  // 0 = dense
        padding.push_back(padding_[k]);
        padding_r.push_back(padding_[k] - output_padding_[k]);
      }
      if (spatial_ == 1) {
        strides.insert(strides.begin(), 1);
        dilates.insert(dilates.begin(), 0);
        padding.insert(padding.begin(), 0);
        padding_r.insert(padding_r.begin(), 0);
      }
      const auto src = PlainDesc(As2d(x_));
      const auto dst = PlainDesc(As2d(outputs_[0].shape));
      const auto weights = memory::desc(WeightDims(), memory::data_type::f32,
                                        memory::format_tag::any);
      const auto bias = PlainDesc({outputs_[0].shape[1]});
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      auto fwd_desc = has_bias_ ? dnnl::deconvolution_forward::desc(
                                      kind, alg, src, weights, bias, dst,
                                      strides, dilates, padding, padding_r)
                                : dnnl::deconvolution_forward::desc(
                                      kind, alg, src, weights, dst, strides,
                                      dilates, padding, padding_r);
      dnnl::deconvolution_forward::primitive_desc fwd(fwd_desc, DefaultAttr(),
                                                      eng);
      forward_ = MakePrimitive<dnnl::deconvolution_forward>(fwd);
      fwd_weights_ = fwd.weights_desc();
      if (!info.backward_will_run) return absl::OkStatus();
      if (info.needs_grad[kX]) {
        dnnl::deconvolution_backward_data::primitive_desc pd(
            dnnl::deconvolution_backward_data::desc(
                alg, src, weights, dst, strides, dilates, padding, padding_r),
            DefaultAttr(), eng, fwd);
        backward_data_ = MakePrimitive<dnnl::deconvolution_backward_data>(pd);
        bd_weights_ = pd.weights_desc();
      }
      if (info.needs_grad[kWeight]) {
        auto desc = has_bias_ ? dnnl::deconvolution_backward_weights::desc(
                                    alg, src, weights, bias, dst, strides,
                                    dilates, padding, padding_r)
                              : dnnl::deconvolution_backward_weights::desc(
                                    alg, src, weights, dst, strides, dilates,
                                    padding, padding_r);
        dnnl::deconvolution_backward_weights::primitive_desc pd(
            desc, DefaultAttr(), eng, fwd);
        backward_weights_ =
            MakePrimitive<dnnl::deconvolution_backward_weights>(pd);
        bw_diff_weights_ = pd.diff_weights_desc();
      }
      return absl::OkStatus();
    });
  }

  absl::Status ReadAttributes(const OpConfig& c) {
    const Attributes& a = c.attrs();
    const size_t n = static_cast<size_t>(spatial_);
    ASSIGN_OR_RETURN(stride_, a.GetIntsInRange("stride", n, 1, kMaxAttrExtent));
    ASSIGN_OR_RETURN(padding_,
                     a.GetIntsInRange("padding", n, 0, kMaxAttrExtent));
    ASSIGN_OR_RETURN(output_padding_,
                     a.GetIntsInRange("output_padding", n, 0, kMaxAttrExtent));
    ASSIGN_OR_RETURN(dilation_,
                     a.GetIntsInRange("dilation", n, 1, kMaxAttrExtent));
    groups_ = a.GetInt("groups");
    if (groups_ < 1) return a.Invalid("groups", ">= 1");
    for (size_t d = 0; d < n; ++d) {
      // torch: "output padding must be smaller than either stride or
      // dilation".
      if (output_padding_[d] >= stride_[d] &&
          output_padding_[d] >= dilation_[d]) {
        return a.Invalid("output_padding",
                         "smaller than stride " + ShapeToString(stride_) +
                             " or dilation " + ShapeToString(dilation_) +
                             " in each dim");
      }
    }
    return absl::OkStatus();
  }

  // (in − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1,
  // positive, as torch requires.
  absl::StatusOr<int64_t> OutputExtent(const OpConfig& c, int d, int64_t in,
                                       int64_t k) const {
    std::optional<int64_t> grown = CheckedMul(in - 1, stride_[d]);
    std::optional<int64_t> kernel = CheckedMul(dilation_[d], k - 1);
    std::optional<int64_t> out;
    if (grown && kernel) out = CheckedAdd(*grown, *kernel);
    if (out) out = CheckedAdd(*out, output_padding_[d] + 1 - 2 * padding_[d]);
    if (!out || *out > kMaxAttrExtent) {
      return c.TooLarge("spatial dim ", d, " of the output exceeds ",
                        kMaxAttrExtent);
    }
    if (*out < 1 && in > 0) {
      return c.Error("spatial dim ", d, " of the output would be ", *out,
                     " for ", c.Describe(kX), " ", ShapeToString(c.shape(kX)),
                     " and ", c.Describe(kWeight), " ",
                     ShapeToString(c.shape(kWeight)),
                     ": expected a positive size");
    }
    return std::max<int64_t>(*out, 0);
  }

  // A shape as oneDNN's 2-d: [N, C, 1, W] for 1-d.
  Shape As2d(const Shape& s) const {
    if (spatial_ == 2) return s;
    return {s[0], s[1], 1, s[2]};
  }
  // oneDNN's deconvolution weights: [C_out, C_in, kh, kw], grouped [G,
  // C_out/G, C_in/G, kh, kw]; torch's bytes are (g,) i, o, h, w.
  memory::dims WeightDims() const {
    const Shape w = As2d(w_);
    if (groups_ == 1) return {w[1], w[0], w[2], w[3]};
    return {groups_, w[1], w[0] / groups_, w[2], w[3]};
  }
  memory::desc PlainWeightDesc() const {
    return memory::desc(
        WeightDims(), memory::data_type::f32,
        groups_ == 1 ? memory::format_tag::iohw : memory::format_tag::giohw);
  }

  // The convolution whose input gradient this op is: of y (its input)
  // by the weights into x.
  ConvGeometry Geometry() const {
    return ConvGeometry::Of(spatial_, outputs_[0].shape, w_, x_, stride_,
                            padding_, dilation_, groups_);
  }

  template <typename T>
  void BackwardLoop(const Tensor& dy, const Tensor& x, const Tensor& w,
                    Tensor& dx, Tensor& dw, Tensor& db) const {
    const T* g = dy.data<T>();
    if (dx.defined()) Geometry().Convolve(g, w.data<T>(), dx.data<T>());
    if (dw.defined()) Geometry().WeightGradient(x.data<T>(), g, dw.data<T>());
    if (db.defined()) {
      const Shape& s = outputs_[0].shape;
      SumPerChannel(g, s[0], s[1], dy.num_elements(), db.data<T>());
    }
  }

  int spatial_ = 2;
  Shape x_, w_;
  std::vector<int64_t> stride_, padding_, output_padding_, dilation_;
  int64_t groups_ = 1;
  bool has_bias_ = false;
  std::optional<DnnlPrimitive> forward_, backward_data_, backward_weights_;
  memory::desc fwd_weights_, bd_weights_, bw_diff_weights_;
};

OpSchema ConvTransposeSchema(int spatial) {
  const bool two = spatial == 2;
  const AttrValue one(std::vector<int64_t>(spatial, 1));
  const AttrValue zero(std::vector<int64_t>(spatial, 0));
  const AttrType type = AttrType::kInts;
  const std::string per_dim = two ? " (one int, or one per spatial dim)" : "";
  OpSchema s;
  s.name = two ? "ConvTranspose2d" : "ConvTranspose1d";
  s.description = absl::StrCat(
      "transposed ", spatial, "-d convolution of x ",
      two ? "[N, C_in, H, W] (or [C_in, H, W]) with weight [C_in, "
            "C_out/groups, kh, kw]"
          : "[N, C_in, L] (or [C_in, L]) with weight [C_in, C_out/groups, k]",
      ", plus bias [C_out]; all int64 gives int64 (no gradient)");
  s.inputs = {{"x"}, {"weight"}, {"bias", /*optional=*/true}};
  s.attrs = {{"stride", type, one, "step between input positions" + per_dim},
             {"padding", type, zero,
              "dilation·(k − 1) − padding zeros around the input" + per_dim},
             {"output_padding", type, zero,
              "added to one side of the output" + per_dim +
                  "; smaller than stride or dilation"},
             {"dilation", type, one, "spacing between kernel taps" + per_dim},
             {"groups", AttrType::kInt, AttrValue(int64_t{1}),
              "channel groups; C_in is a multiple of it"}};
  s.create = [spatial](const OpConfig& c) {
    return CreateMaybeUnbatched(c, spatial + 2, {0},
                                [spatial](const OpConfig& b) {
                                  return ConvTransposeOp::Create(b, spatial);
                                });
  };
  return s;
}

REGISTER_OP(ConvTransposeSchema(1));
REGISTER_OP(ConvTransposeSchema(2));

}  // namespace
}  // namespace gradserve
