// CrossEntropyLoss: logits x [N, C] against class labels (int64 [N]) or
// class probabilities (float [N, C]). Per row, with the log-sum-exp
// lse = m + log Σ_c e^(x_c − m), m = max_c x_c (no overflow):
//   labels:        −log_softmax(x)_t  = lse − x_t
//   probabilities: −Σ_c t_c·log_softmax(x)_c = Σ_c t_c·(lse − x_c)
// "mean" divides by N (not N·C), as torch does for both target kinds.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

class CrossEntropyLossOp : public LossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    ASSIGN_OR_RETURN(auto nc, ClassScoresShape(c));
    const auto [n, classes] = nc;
    const TensorMeta& target = c.input(1);
    const bool labels =
        target.dtype == DType::kInt64 && target.shape == Shape{n};
    const bool probabilities =
        target.dtype == c.float_dtype() && target.shape == Shape{n, classes};
    if (!labels && !probabilities) {
      return c.Error(c.Describe(1), " must be int64 class labels of shape [", n,
                     "] or ", DTypeName(c.float_dtype()),
                     " class probabilities of shape [", n, ", ", classes,
                     "], got ", target.ToString());
    }
    auto op = std::make_unique<CrossEntropyLossOp>();
    op->n_ = n;
    op->classes_ = classes;
    op->labels_ = labels;
    RETURN_IF_ERROR(op->InitLoss(c, n));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override {
    // max, subtract, exp, add per element for lse; the probability target's
    // weighted sum adds a subtract, multiply and add per element.
    return MulSat(MulSat(n_, classes_), labels_ ? 4 : 7);
  }

  int64_t ExtraBytes() const override {
    return MulSat(n_, static_cast<int64_t>(DTypeSize(outputs_[0].dtype)));
  }

  // Backward recomputes softmax = e^(x − lse) from the saved logits and the
  // per-row lse Forward keeps (ctx.Save, N values). Saving softmax itself
  // would cost N·C values, and −log_softmax (the probability target's
  // gradient) cannot be recovered from it accurately where softmax
  // underflows; x − lse gives both exactly as Forward had them.
  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0] || needs_grad[1]) s.inputs.push_back(0);
    if (needs_grad[0]) s.inputs.push_back(1);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& target = ctx.input(1);
    if (labels_) RETURN_IF_ERROR(CheckLabels(1, target, classes_));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      Tensor lse_tensor = Tensor::Empty(y.dtype(), {n_});
      T* lse = lse_tensor.data<T>();
      double sum = 0;
      for (int64_t n = 0; n < n_; ++n) {
        const T* row = x + n * classes_;
        const T m = *std::max_element(row, row + classes_);
        double s = 0;  // in double, as every sum over many elements
        for (int64_t c = 0; c < classes_; ++c) s += std::exp(row[c] - m);
        lse[n] = static_cast<T>(m + std::log(s));
        if (labels_) {
          sum += lse[n] - row[target.data<int64_t>()[n]];
        } else {
          const T* t = target.data<T>() + n * classes_;
          for (int64_t c = 0; c < classes_; ++c)
            sum += t[c] * (lse[n] - row[c]);
        }
      }
      y.data<T>()[0] = Reduce<T>(sum);
      if (ctx.backward_will_run()) ctx.Save(std::move(lse_tensor));
    });
    return absl::OkStatus();
  }

  // d/dx_c = softmax_c·Σ_k t_k − t_c: (Y − T) for labels, whose one-hot row
  // sums to 1; d/dt_c = −log_softmax_c = lse − x_c.
  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    Tensor dx =
        ctx.needs_grad(0) ? Tensor::Empty(dtype, {n_, classes_}) : Tensor();
    Tensor dt =
        ctx.needs_grad(1) ? Tensor::Empty(dtype, {n_, classes_}) : Tensor();
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T dy = ctx.grad_output(0).data<T>()[0];
      const T* x = ctx.input(0).data<T>();
      const T* lse = ctx.saved()[0].data<T>();
      for (int64_t n = 0; n < n_; ++n) {
        const T* row = x + n * classes_;
        if (dx.defined()) {
          T* d = dx.data<T>() + n * classes_;
          if (labels_) {
            const int64_t label = ctx.input(1).data<int64_t>()[n];
            for (int64_t c = 0; c < classes_; ++c) {
              const T onehot = c == label ? T(1) : T(0);
              d[c] = ScaleTerm(std::exp(row[c] - lse[n]) - onehot, dy);
            }
          } else {
            const T* t = ctx.input(1).data<T>() + n * classes_;
            double sum = 0;
            for (int64_t c = 0; c < classes_; ++c) sum += t[c];
            const T total = static_cast<T>(sum);
            for (int64_t c = 0; c < classes_; ++c) {
              d[c] = ScaleTerm(std::exp(row[c] - lse[n]) * total - t[c], dy);
            }
          }
        }
        if (dt.defined()) {
          T* d = dt.data<T>() + n * classes_;
          for (int64_t c = 0; c < classes_; ++c) {
            d[c] = ScaleTerm(lse[n] - row[c], dy);
          }
        }
      }
    });
    if (dx.defined()) ctx.SetGradInput(0, std::move(dx));
    if (dt.defined()) ctx.SetGradInput(1, std::move(dt));
    return absl::OkStatus();
  }

 private:
  int64_t n_ = 0, classes_ = 0;
  bool labels_ = false;
};

REGISTER_OP(LossSchema(
    "CrossEntropyLoss",
    "cross-entropy of softmax(logits) against class labels or class "
    "probabilities; logits [N, C], target int64 [N] in [0, C) or float "
    "[N, C]; reduction over the N rows; a scalar",
    "logits", CrossEntropyLossOp::Create));

}  // namespace
}  // namespace gradserve
