// AdaptiveAvgPool2d and AdaptiveMaxPool2d over x [N, C, H, W] (or unbatched
// [C, H, W]) to output_size [OH, OW], as torch's adaptive_avg_pool2d and
// adaptive_max_pool2d: output row i pools input rows
// [floor(i·H/OH), ceil((i + 1)·H/OH)), and so for columns; windows may
// overlap (OH > H too). AdaptiveMaxPool2d takes the first maximum of each
// window (NaN counting as one) and, as a second output if named, returns
// its index within the H·W plane (int64, as return_indices). Global pooling
// is output_size [1, 1]. Plain loops in both dtypes.
#include <algorithm>

#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/ops/window.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

class AdaptivePoolOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool max) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    // (Unbatched x [C, H, W] arrives here as [1, C, H, W].)
    RETURN_IF_ERROR(c.ExpectRankBetween(0, 3, 4));
    auto op = std::make_unique<AdaptivePoolOp>();
    op->max_ = max;
    ASSIGN_OR_RETURN(op->out_, c.attrs().GetIntsInRange("output_size", 2, 1,
                                                        kMaxAttrExtent));
    op->x_ = c.shape(0);
    if (op->x_[2] == 0 || op->x_[3] == 0) {
      return c.Error(c.Describe(0), " must have H and W of at least 1, got ",
                     ShapeToString(op->x_));
    }
    const Shape y = {op->x_[0], op->x_[1], op->out_[0], op->out_[1]};
    op->outputs_ = {{c.float_dtype(), y}};
    if (max && c.num_outputs() > 1) op->outputs_.push_back({DType::kInt64, y});
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    // Each window covers about ceil(H/OH)·ceil(W/OW) elements.
    const int64_t kh = (x_[2] + out_[0] - 1) / out_[0] + 1;
    const int64_t kw = (x_[3] + out_[1] - 1) / out_[1] + 1;
    return MulSat(outputs_[0].num_elements(), MulSat(kh, kw));
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    if (max_) return {{0}, {}};  // Backward finds the maxima again
    return {};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    int64_t* indices =
        ctx.num_outputs() > 1 ? ctx.AllocateOutput(1).data<int64_t>() : nullptr;
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* xp = ctx.input(0).data<T>();
      T* yp = y.data<T>();
      ForEachWindow([&](int64_t o, const auto& taps, int64_t count) {
        if (max_) {
          const int64_t i = FirstMaxIndex(xp, taps);
          yp[o] = xp[i];
          if (indices) indices[o] = i % (x_[2] * x_[3]);
        } else {
          double sum = 0;
          taps([&](int64_t i) { sum += xp[i]; });
          yp[o] = static_cast<T>(sum / static_cast<double>(count));
        }
      });
    });
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    Tensor dx = Tensor::Zeros(outputs_[0].dtype, x_);
    DispatchFloat(dx.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* gp = ctx.grad_output(0).data<T>();
      const T* xp = max_ ? ctx.input(0).data<T>() : nullptr;
      T* dp = dx.data<T>();
      ForEachWindow([&](int64_t o, const auto& taps, int64_t count) {
        if (max_) {
          dp[FirstMaxIndex(xp, taps)] += gp[o];
        } else {
          const T share = gp[o] / static_cast<T>(count);
          taps([&](int64_t i) { dp[i] += share; });
        }
      });
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  // Calls f(o, taps, count) for every output element o; taps(g) calls g(i)
  // for the elements of o's window, count of them.
  template <typename F>
  void ForEachWindow(F&& f) const {
    const int64_t h = x_[2], w = x_[3], oh = out_[0], ow = out_[1];
    for (int64_t plane = 0; plane < x_[0] * x_[1]; ++plane) {
      for (int64_t i = 0; i < oh; ++i) {
        const int64_t y0 = i * h / oh, y1 = ((i + 1) * h + oh - 1) / oh;
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t x0 = j * w / ow, x1 = ((j + 1) * w + ow - 1) / ow;
          auto taps = [&](auto&& g) {
            for (int64_t r = y0; r < y1; ++r) {
              for (int64_t c = x0; c < x1; ++c) g((plane * h + r) * w + c);
            }
          };
          f((plane * oh + i) * ow + j, taps, (y1 - y0) * (x1 - x0));
        }
      }
    }
  }

  bool max_ = false;
  Shape x_;
  std::vector<int64_t> out_;
};

OpSchema AdaptivePoolSchema(bool max) {
  OpSchema s;
  s.name = max ? "AdaptiveMaxPool2d" : "AdaptiveAvgPool2d";
  s.description =
      max ? "maximum over adaptive windows of x [N, C, H, W] (or [C, H, W]) "
            "to [N, C, OH, OW]; a second output, if named, holds the maxima's "
            "indices within each H·W plane"
          : "mean over adaptive windows of x [N, C, H, W] (or [C, H, W]) to "
            "[N, C, OH, OW]; output_size [1, 1] is global average pooling";
  s.inputs = {{"x"}};
  if (max) {
    s.outputs = {"y", "indices"};
    s.min_outputs = 1;
  }
  s.attrs = {{"output_size", AttrType::kInts, std::nullopt,
              "[OH, OW] (or one int for both)"}};
  s.create = [max](const OpConfig& c) {
    return CreateMaybeUnbatched(c, 4, {0}, [max](const OpConfig& b) {
      return AdaptivePoolOp::Create(b, max);
    });
  };
  return s;
}

REGISTER_OP(AdaptivePoolSchema(false));
REGISTER_OP(AdaptivePoolSchema(true));

}  // namespace
}  // namespace gradserve
