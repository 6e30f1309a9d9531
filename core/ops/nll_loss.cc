// NLLLoss: −log_probs[n, t_n] reduced over the N rows; log_probs [N, C],
// target int64 [N] in [0, C).
#include <memory>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

class NLLLossOp : public LossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    ASSIGN_OR_RETURN(auto nc, ClassScoresShape(c));
    RETURN_IF_ERROR(c.ExpectInt64(1));
    RETURN_IF_ERROR(c.ExpectShape(1, {nc.first}));
    auto op = std::make_unique<NLLLossOp>();
    op->n_ = nc.first;
    op->classes_ = nc.second;
    RETURN_IF_ERROR(op->InitLoss(c, op->n_));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override { return n_; }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0]) s.inputs.push_back(1);  // where the −1s go
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& target = ctx.input(1);
    RETURN_IF_ERROR(CheckLabels(1, target, classes_));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      const int64_t* t = target.data<int64_t>();
      double sum = 0;
      for (int64_t n = 0; n < n_; ++n) sum -= x[n * classes_ + t[n]];
      y.data<T>()[0] = Reduce<T>(sum);
    });
    return absl::OkStatus();
  }

  // d/dlog_probs[n, c] = −1 where c = t_n, else 0.
  absl::Status Backward(BackwardContext& ctx) const override {
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const DType dtype = outputs_[0].dtype;
    Tensor dx = Tensor::Zeros(dtype, {n_, classes_});
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T dy = ctx.grad_output(0).data<T>()[0];
      const T g = ScaleTerm(T(-1), dy);
      const int64_t* t = ctx.input(1).data<int64_t>();
      T* d = dx.data<T>();
      for (int64_t n = 0; n < n_; ++n) d[n * classes_ + t[n]] = g;
    });
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

 private:
  int64_t n_ = 0, classes_ = 0;
};

REGISTER_OP(LossSchema(
    "NLLLoss",
    "−log_probs[n, target[n]] reduced over the N rows; log_probs [N, C], "
    "target int64 [N] in [0, C); a scalar",
    "log_probs", NLLLossOp::Create));

}  // namespace
}  // namespace gradserve
