// NLLLoss: −log_probs[n, t_n, d...] reduced over the rows (one per sample
// and position); log_probs [N, C, d1, ..., dk] (or unbatched [C]), target
// int64 [N, d1, ..., dk] (0-d for [C]) in [0, C), as
// torch.nn.functional.nll_loss.
#include <memory>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

class NLLLossOp : public LossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    ASSIGN_OR_RETURN(ClassScores scores, ClassScoresShape(c));
    RETURN_IF_ERROR(c.ExpectInt64(1));
    RETURN_IF_ERROR(c.ExpectShape(1, ClassScores::LabelShape(c.shape(0))));
    auto op = std::make_unique<NLLLossOp>();
    op->scores_ = scores;
    op->shape_ = c.shape(0);
    RETURN_IF_ERROR(op->InitLoss(c, scores.rows()));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override { return scores_.rows(); }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0]) s.inputs.push_back(1);  // where the −1s go
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& target = ctx.input(1);
    RETURN_IF_ERROR(CheckLabels(1, target, scores_.classes));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      const int64_t* t = target.data<int64_t>();
      double sum = 0;
      for (int64_t r = 0; r < scores_.rows(); ++r) {
        sum -= x[scores_.Offset(r) + t[r] * scores_.inner];
      }
      y.data<T>()[0] = Reduce<T>(sum);
    });
    return absl::OkStatus();
  }

  // d/dlog_probs[n, c, d...] = −1 where c = t[n, d...], else 0.
  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const DType dtype = outputs_[0].dtype;
    Tensor dx = Tensor::Zeros(dtype, shape_);
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T dy = ctx.grad_output(0).data<T>()[0];
      const T g = ScaleTerm(T(-1), dy);
      const int64_t* t = ctx.input(1).data<int64_t>();
      T* d = dx.data<T>();
      for (int64_t r = 0; r < scores_.rows(); ++r) {
        d[scores_.Offset(r) + t[r] * scores_.inner] = g;
      }
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  ClassScores scores_;
  Shape shape_;
};

REGISTER_OP(LossSchema(
    "NLLLoss",
    "−log_probs[n, target[n, d...], d...] reduced over the rows; log_probs "
    "[N, C, d...] or [C], target int64 [N, d...] (0-d for [C]) in [0, C); a "
    "scalar",
    "log_probs", ClassLossFactory(NLLLossOp::Create, false)));

}  // namespace
}  // namespace gradserve
