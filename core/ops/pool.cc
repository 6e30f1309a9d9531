// MaxPool2d and AvgPool2d over x [N, C, H, W] (or unbatched [C, H, W]), as
// torch.nn.functional.max_pool2d / avg_pool2d: kernel, stride (= kernel),
// padding ([0, 0], at most half the kernel; or 4 ints, each dim's before
// then after, as ONNX's asymmetric pads), ceil_mode (0); MaxPool2d also
// dilation ([1, 1]) and a second output, the indices of the maxima (int64,
// flat within each H·W plane, as return_indices gives them, or within the
// whole [N, C, H, W] tensor with flat_indices = 1, as ONNX's MaxPool
// gives them); AvgPool2d count_include_pad (1) and divisor_override (0 =
// none). Global average pooling is AvgPool2d with kernel = [H, W].
//
// float32 runs oneDNN pooling in the input's layout (blocked after a
// convolution) for PyTorch's defaults (no dilation, ceil mode that adds no
// window, padding counted, no divisor, no indices); max pooling keeps
// oneDNN's workspace (where each maximum came from) from forward to
// backward. The other options, float64 and empty batches run loops over
// plain tensors, where max pooling takes the first maximum of each window
// (NaN counting as a maximum), as PyTorch does, and average pooling divides
// by PyTorch's window size.
#include <algorithm>
#include <limits>
#include <optional>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/int_math.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/ops/window.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::memory;

class PoolOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool max) {
    // AvgPool2d of int64 x gives int64: each window's wrapped sum divided
    // by its divisor toward zero, as torch's integer kernel.
    const bool ints = !max && c.input(0).dtype == DType::kInt64;
    if (!ints) RETURN_IF_ERROR(c.ExpectFloat(0));
    // (Unbatched x [C, H, W] arrives here as [1, C, H, W].)
    RETURN_IF_ERROR(c.ExpectRankBetween(0, 3, 4));
    auto op = std::make_unique<PoolOp>();
    op->max_ = max;
    RETURN_IF_ERROR(op->ReadWindow(c.attrs()));
    const Shape& x = c.shape(0);
    ASSIGN_OR_RETURN(
        std::vector<int64_t> floor_out,
        WindowOutputDims(c, {op->kernel_, op->stride_, op->padding_,
                             op->dilation_, op->padding_end_}));
    Shape y = {x[0], x[1]};
    for (int d = 0; d < 2; ++d) {
      y.push_back(op->ceil_mode_ ? op->CeilOutputDim(d, x[2 + d])
                                 : floor_out[d]);
    }
    op->x_ = x;
    op->outputs_ = {{ints ? DType::kInt64 : c.float_dtype(), y}};
    if (c.num_outputs() > 1) op->outputs_.push_back({DType::kInt64, y});
    op->defaults_ = y[2] == floor_out[0] && y[3] == floor_out[1] &&
                    op->dilation_ == std::vector<int64_t>{1, 1} &&
                    op->count_include_pad_ && op->divisor_ == 0 &&
                    c.num_outputs() == 1;
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(outputs_[0].num_elements(), MulSat(kernel_[0], kernel_[1]));
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    // oneDNN's max pooling reads its workspace (saved by Forward); the loop
    // finds the maxima again in x.
    if (max_ && !OnDnnl()) return {{0}, {}};
    return {};
  }

  bool HandlesLayouts() const override { return true; }
  std::shared_ptr<const Layout> OutputLayout(int) const override {
    return output_layout_;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!OnDnnl()) return absl::OkStatus();
    return CatchDnnl(node_, [&] {
      const memory::dims strides(stride_.begin(), stride_.end());
      const memory::dims kernel(kernel_.begin(), kernel_.end());
      const memory::dims padding(padding_.begin(), padding_.end());
      const memory::dims padding_end(padding_end_.begin(), padding_end_.end());
      src_desc_ =
          info.input_layouts[0] ? info.input_layouts[0]->desc : PlainDesc(x_);
      const memory::desc dst(DnnlDims(outputs_[0].shape),
                             memory::data_type::f32, memory::format_tag::any);
      const auto alg = max_ ? dnnl::algorithm::pooling_max
                            : dnnl::algorithm::pooling_avg_include_padding;
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      dnnl::pooling_forward::primitive_desc fwd(
          dnnl::pooling_forward::desc(kind, alg, src_desc_, dst, strides,
                                      kernel, padding, padding_end),
          DefaultAttr(), CpuEngine());
      forward_ = MakePrimitive<dnnl::pooling_forward>(fwd);
      output_layout_ = std::make_shared<Layout>(Layout{fwd.dst_desc()});
      if (max_ && info.backward_will_run) workspace_ = fwd.workspace_desc();
      if (!info.backward_will_run) return absl::OkStatus();
      const memory::desc diff_src(DnnlDims(x_), memory::data_type::f32,
                                  memory::format_tag::any);
      dnnl::pooling_backward::primitive_desc bwd(
          dnnl::pooling_backward::desc(alg, diff_src, fwd.dst_desc(), strides,
                                       kernel, padding, padding_end),
          DefaultAttr(), CpuEngine(), fwd);
      backward_ = MakePrimitive<dnnl::pooling_backward>(bwd);
      diff_src_desc_ = bwd.diff_src_desc();
      diff_dst_desc_ = bwd.diff_dst_desc();
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    if (!forward_) {
      const Tensor x = Plain(ctx.input(0), ctx.dnnl());
      Tensor& y = ctx.AllocateOutput(0);
      int64_t* indices = ctx.num_outputs() > 1
                             ? ctx.AllocateOutput(1).data<int64_t>()
                             : nullptr;
      DispatchNumeric(y.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* xp = x.data<T>();
        T* yp = y.data<T>();
        ForEachWindow([&](int64_t o, const auto& taps, int64_t divisor) {
          if (max_) {
            const int64_t i = FirstMaxIndex(xp, taps);
            yp[o] = i < 0 ? -std::numeric_limits<T>::infinity() : xp[i];
            if (indices) {
              indices[o] = i < 0 ? -1 : flat_indices_ ? i : i % (x_[2] * x_[3]);
            }
          } else {
            T sum = 0;
            taps([&](int64_t i) { sum = MulAdd(sum, xp[i], T(1)); });
            yp[o] = sum / static_cast<T>(divisor);
          }
        });
      });
      return absl::OkStatus();
    }
    return CatchDnnl(node_, [&] {
      Tensor src = Reordered(ctx.input(0), src_desc_, ctx.dnnl());
      Tensor y = EmptyIn(outputs_[0], output_layout_->desc);
      DnnlArgs args = {{DNNL_ARG_SRC, WrapTensor(src_desc_, src)},
                       {DNNL_ARG_DST, WrapTensor(output_layout_->desc, y)}};
      if (workspace_) {
        Tensor ws = Tensor::Empty(
            DType::kFloat32,
            {static_cast<int64_t>((workspace_->get_size() + 3) / 4)});
        args[DNNL_ARG_WORKSPACE] = WrapTensor(*workspace_, ws);
        ctx.Save(std::move(ws));
      }
      ctx.dnnl().Execute(*forward_, args);
      ctx.SetOutput(0, std::move(y));
      return absl::OkStatus();
    });
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (!backward_) {
      Tensor dx = Tensor::Zeros(outputs_[0].dtype, x_);
      const Tensor dy = Plain(ctx.grad_output(0), ctx.dnnl());
      const Tensor x = max_ ? Plain(ctx.input(0), ctx.dnnl()) : Tensor();
      DispatchFloat(dx.dtype(), [&](auto zero) {
        using T = decltype(zero);
        const T* gp = dy.data<T>();
        T* dp = dx.data<T>();
        const T* xp = max_ ? x.data<T>() : nullptr;
        ForEachWindow([&](int64_t o, const auto& taps, int64_t divisor) {
          if (max_) {
            const int64_t first = FirstMaxIndex(xp, taps);
            if (first >= 0) dp[first] += gp[o];
          } else {
            const T share = gp[o] / static_cast<T>(divisor);
            taps([&](int64_t i) { dp[i] += share; });
          }
        });
      });
      ctx.SetGradInput(0, std::move(dx));
      return absl::OkStatus();
    }
    return CatchDnnl(node_, [&] {
      Tensor dy = Reordered(ctx.grad_output(0), diff_dst_desc_, ctx.dnnl());
      Tensor dx = EmptyIn({outputs_[0].dtype, x_}, diff_src_desc_);
      DnnlArgs args = {{DNNL_ARG_DIFF_DST, WrapTensor(diff_dst_desc_, dy)},
                       {DNNL_ARG_DIFF_SRC, WrapTensor(diff_src_desc_, dx)}};
      if (workspace_) {
        args[DNNL_ARG_WORKSPACE] = WrapTensor(*workspace_, ctx.saved()[0]);
      }
      ctx.dnnl().Execute(*backward_, args);
      ctx.SetGradInput(0, std::move(dx));
      return absl::OkStatus();
    });
  }

 private:
  bool OnDnnl() const { return defaults_ && RunsOnDnnl(outputs_[0]); }

  // kernel, stride (empty = kernel), padding (at most half the kernel),
  // dilation, ceil_mode, count_include_pad, divisor_override.
  absl::Status ReadWindow(const Attributes& a) {
    ASSIGN_OR_RETURN(kernel_, a.GetIntsInRange("kernel", 2, 1, kMaxAttrExtent));
    ASSIGN_OR_RETURN(std::vector<int64_t> stride, a.GetInts("stride"));
    stride_ = kernel_;
    if (!stride.empty()) {
      ASSIGN_OR_RETURN(stride_,
                       a.GetIntsInRange("stride", 2, 1, kMaxAttrExtent));
    }
    ASSIGN_OR_RETURN(Padding padding, ReadPadding(a, "padding", 2));
    padding_ = std::move(padding.begin);
    padding_end_ = std::move(padding.end);
    for (int d = 0; d < 2; ++d) {
      if (padding_[d] > kernel_[d] / 2 || padding_end_[d] > kernel_[d] / 2) {
        return a.Invalid("padding", ">= 0 and at most half the kernel");
      }
    }
    ceil_mode_ = a.GetInt("ceil_mode") != 0;
    if (max_) {
      ASSIGN_OR_RETURN(dilation_,
                       a.GetIntsInRange("dilation", 2, 1, kMaxAttrExtent));
      flat_indices_ = a.GetInt("flat_indices") != 0;
    } else {
      count_include_pad_ = a.GetInt("count_include_pad") != 0;
      // Any other int, as PyTorch (which refuses only 0, its "none" here).
      divisor_ = a.GetInt("divisor_override");
      if (divisor_ < -kMaxAttrExtent || divisor_ > kMaxAttrExtent) {
        return a.Invalid("divisor_override",
                         absl::StrCat("0 (none) or in [-", kMaxAttrExtent, ", ",
                                      kMaxAttrExtent, "]"));
      }
    }
    return absl::OkStatus();
  }

  // PyTorch's ceil mode: windows start inside the input or its left
  // padding, so the last one may overhang the right padding.
  int64_t CeilOutputDim(int d, int64_t in) const {
    const int64_t span = dilation_[d] * (kernel_[d] - 1) + 1;
    const int64_t reach =
        in + padding_[d] + padding_end_[d] - span;  // >= 0, checked
    int64_t out = (reach + stride_[d] - 1) / stride_[d] + 1;
    if ((out - 1) * stride_[d] >= in + padding_[d]) --out;
    return out;
  }

  // Calls f(o, taps, divisor) for every output element o, where taps(g)
  // calls g(i) for the input elements of o's window that lie inside the
  // input, and divisor is what average pooling divides by: PyTorch's window
  // clipped to the padded input (to the input without count_include_pad),
  // or divisor_override.
  template <typename F>
  void ForEachWindow(F&& f) const {
    const Shape& y = outputs_[0].shape;
    const int64_t h = x_[2], w = x_[3];
    for (int64_t plane = 0; plane < y[0] * y[1]; ++plane) {
      for (int64_t oy = 0; oy < y[2]; ++oy) {
        const int64_t y0 = oy * stride_[0] - padding_[0];
        for (int64_t ox = 0; ox < y[3]; ++ox) {
          const int64_t x0 = ox * stride_[1] - padding_[1];
          const int64_t o = (plane * y[2] + oy) * y[3] + ox;
          auto taps = [&](auto&& g) {
            for (int64_t ky = 0; ky < kernel_[0]; ++ky) {
              const int64_t iy = y0 + ky * dilation_[0];
              if (iy < 0 || iy >= h) continue;
              for (int64_t kx = 0; kx < kernel_[1]; ++kx) {
                const int64_t ix = x0 + kx * dilation_[1];
                if (ix >= 0 && ix < w) g((plane * h + iy) * w + ix);
              }
            }
          };
          f(o, taps, Divisor(y0, x0));
        }
      }
    }
  }

  // Average pooling's divisor for the window starting at (y0, x0).
  int64_t Divisor(int64_t y0, int64_t x0) const {
    if (divisor_ != 0) return divisor_;
    const int64_t h = x_[2], w = x_[3];
    int64_t y1 = std::min(y0 + kernel_[0], h + padding_end_[0]);
    int64_t x1 = std::min(x0 + kernel_[1], w + padding_end_[1]);
    if (count_include_pad_) return (y1 - y0) * (x1 - x0);
    y1 = std::min(y1, h);
    x1 = std::min(x1, w);
    return (y1 - std::max<int64_t>(y0, 0)) * (x1 - std::max<int64_t>(x0, 0));
  }

  bool max_ = true;
  bool ceil_mode_ = false, count_include_pad_ = true, flat_indices_ = false;
  bool defaults_ = true;  // oneDNN computes it (see the top)
  int64_t divisor_ = 0;
  Shape x_;
  // padding_ before each dim, padding_end_ after it.
  std::vector<int64_t> kernel_, stride_, padding_, padding_end_,
      dilation_ = {1, 1};
  std::optional<DnnlPrimitive> forward_, backward_;
  memory::desc src_desc_, diff_src_desc_, diff_dst_desc_;
  std::optional<memory::desc> workspace_;
  std::shared_ptr<const Layout> output_layout_;
};

OpSchema PoolSchema(bool max) {
  OpSchema s;
  s.name = max ? "MaxPool2d" : "AvgPool2d";
  s.description = max ? "maximum over each kernel window of x [N, C, H, W] "
                        "(or [C, H, W]); a second output, if named, holds "
                        "the maxima's indices within each H·W plane"
                      : "mean over each kernel window of x [N, C, H, W] (or "
                        "[C, H, W]), the zero padding counted unless "
                        "count_include_pad is 0; int64 x gives int64 (sums "
                        "divided toward zero)";
  s.inputs = {{"x"}};
  if (max) {
    s.outputs = {"y", "indices"};
    s.min_outputs = 1;
  }
  s.attrs = {
      {"kernel", AttrType::kInts, std::nullopt, "window [kh, kw] (or one int)"},
      {"stride", AttrType::kInts, AttrValue(std::vector<int64_t>{}),
       "step between windows; empty = kernel"},
      {"padding", AttrType::kInts, AttrValue(std::vector<int64_t>{0, 0}),
       "padding on each side, at most half the kernel; or 4 ints: each "
       "dim's before, then each dim's after (ONNX's pads)"},
      {"ceil_mode", AttrType::kInt, AttrValue(int64_t{0}),
       "1: output extents rounded up, as PyTorch's ceil_mode"}};
  if (max) {
    s.attrs.push_back({"dilation", AttrType::kInts,
                       AttrValue(std::vector<int64_t>{1, 1}),
                       "spacing between window taps"});
    s.attrs.push_back(
        {"flat_indices", AttrType::kInt, AttrValue(int64_t{0}),
         "1: indices count within all of x (as ONNX's MaxPool), not within "
         "each H·W plane"});
  } else {
    s.attrs.push_back({"count_include_pad", AttrType::kInt,
                       AttrValue(int64_t{1}),
                       "1: the zero padding counts in the mean's divisor"});
    s.attrs.push_back(
        {"divisor_override", AttrType::kInt, AttrValue(int64_t{0}),
         "divide every window's sum by this nonzero int instead (0 = off)"});
  }
  s.create = [max](const OpConfig& c) {
    return CreateMaybeUnbatched(
        c, 4, {0}, [max](const OpConfig& b) { return PoolOp::Create(b, max); });
  };
  return s;
}

REGISTER_OP(PoolSchema(true));
REGISTER_OP(PoolSchema(false));

}  // namespace
}  // namespace gradserve
