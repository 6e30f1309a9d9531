// NLLLoss: −w[t]·log_probs[n, t, d...] per row (one per sample and position,
// t = target[n, d...]); log_probs [N, C, d1, ..., dk] (or unbatched [C]),
// target int64 [N, d1, ..., dk] (0-d for [C]) in [0, C), class weight w [C]
// (optional, 1 without), rows whose label is ignore_index left out (0 under
// "none"); "mean" divides by the kept rows' total weight, as
// torch.nn.functional.nll_loss.
#include <memory>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

class NLLLossOp : public ClassLossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    auto op = std::make_unique<NLLLossOp>();
    RETURN_IF_ERROR(c.ExpectInt64(1));
    RETURN_IF_ERROR(op->InitClassLoss(c, /*labels=*/true));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override { return scores().rows(); }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0] || WantsWeightGrad(needs_grad)) {
      s.inputs.push_back(1);  // where the −w go
      if (has_weight()) s.inputs.push_back(kWeight);
    }
    if (WantsWeightGrad(needs_grad)) s.inputs.push_back(0);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    RETURN_IF_ERROR(CheckTargetLabels(ctx.input(1)));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      const Labels<T> labels(ctx, *this);
      WriteLoss<T>(y, scores().rows(), labels.total, [&](int64_t r) {
        return labels.kept(r) ? -labels.w(r) * x[labels.at(r)] : T(0);
      });
    });
    return absl::OkStatus();
  }

  // d/dlog_probs[n, c, d...] = −w[c] where c = t[n, d...], else 0; the
  // class weight's gradient sums each row's −log_probs[t] (less the mean,
  // under "mean") into its class.
  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    Tensor dx = ctx.needs_grad(0) ? Tensor::Zeros(dtype, shape()) : Tensor();
    Tensor dw = NeedsWeightGrad(ctx) ? Tensor::Zeros(dtype, {scores().classes})
                                     : Tensor();
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T* dy = ctx.grad_output(0).data<T>();
      const Labels<T> labels(ctx, *this);
      if (dx.defined()) {
        T* d = dx.data<T>();
        for (int64_t r = 0; r < scores().rows(); ++r) {
          if (labels.kept(r)) {
            d[labels.at(r)] = ScaleTerm(-labels.w(r), dy, r, labels.total);
          }
        }
      }
      if (dw.defined()) {
        const T* x = ctx.input(0).data<T>();
        AddWeightGrad<T>(labels, dy, dw,
                         [&](int64_t r) { return -x[labels.at(r)]; });
      }
    });
    if (dx.defined()) ctx.SetGradInput(0, std::move(dx));
    if (dw.defined()) ctx.SetGradInput(kWeight, std::move(dw));
    return absl::OkStatus();
  }
};

REGISTER_OP(LossSchema(
    "NLLLoss",
    "−weight[t]·log_probs[n, t, d...], t = target[n, d...], reduced over "
    "the rows whose label is not ignore_index; log_probs [N, C, d...] or "
    "[C], target int64 [N, d...] (0-d for [C]) in [0, C), weight [C] "
    "optional; \"mean\" divides by the rows' total weight",
    "log_probs", ClassLossFactory(NLLLossOp::Create, false),
    {{"weight", /*optional=*/true}}, {IgnoreIndexAttr()}));

}  // namespace
}  // namespace gradserve
