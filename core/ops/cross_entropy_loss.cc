// CrossEntropyLoss: logits x [N, C, d1, ..., dk] (or unbatched [C]) against
// class labels (int64 [N, d1, ..., dk], or 0-d) or class probabilities
// (float, x's shape), as torch.nn.functional.cross_entropy. Per row (one
// per sample and position), with the log-sum-exp
// lse = m + log Σ_c e^(x_c − m), m = max_c x_c (no overflow):
//   labels:        −log_softmax(x)_t  = lse − x_t
//   probabilities: −Σ_c t_c·log_softmax(x)_c = Σ_c t_c·(lse − x_c)
// "mean" divides by the number of rows N·d1·...·dk (not by C), as torch
// does for both target kinds.
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
    ASSIGN_OR_RETURN(ClassScores scores, ClassScoresShape(c));
    const TensorMeta& target = c.input(1);
    const Shape& x = c.shape(0);
    const Shape label_shape = ClassScores::LabelShape(x);
    const bool labels =
        target.dtype == DType::kInt64 && target.shape == label_shape;
    const bool probabilities =
        target.dtype == c.float_dtype() && target.shape == x;
    if (!labels && !probabilities) {
      return c.Error(c.Describe(1), " must be int64 class labels of shape ",
                     ShapeToString(label_shape), " or ",
                     DTypeName(c.float_dtype()),
                     " class probabilities of shape ", ShapeToString(x),
                     ", got ", target.ToString());
    }
    auto op = std::make_unique<CrossEntropyLossOp>();
    op->scores_ = scores;
    op->labels_ = labels;
    RETURN_IF_ERROR(op->InitLoss(c, scores.rows()));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override {
    // max, subtract, exp, add per element for lse; the probability target's
    // weighted sum adds a subtract, multiply and add per element.
    return MulSat(MulSat(scores_.rows(), scores_.classes), labels_ ? 4 : 7);
  }

  int64_t ExtraBytes() const override {
    return MulSat(scores_.rows(),
                  static_cast<int64_t>(DTypeSize(outputs_[0].dtype)));
  }

  // Backward recomputes softmax = e^(x − lse) from the saved logits and the
  // per-row lse Forward keeps (ctx.Save, one value per row). Saving softmax
  // itself would cost C values per row, and −log_softmax (the probability
  // target's gradient) cannot be recovered from it accurately where softmax
  // underflows; x − lse gives both exactly as Forward had them.
  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0] || needs_grad[1]) s.inputs.push_back(0);
    if (needs_grad[0]) s.inputs.push_back(1);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& target = ctx.input(1);
    if (labels_) RETURN_IF_ERROR(CheckLabels(1, target, scores_.classes));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      const int64_t classes = scores_.classes, stride = scores_.inner;
      Tensor lse_tensor = Tensor::Empty(y.dtype(), {scores_.rows()});
      T* lse = lse_tensor.data<T>();
      double sum = 0;
      for (int64_t r = 0; r < scores_.rows(); ++r) {
        const T* row = x + scores_.Offset(r);
        T m = row[0];
        for (int64_t c = 1; c < classes; ++c) m = std::max(m, row[c * stride]);
        double s = 0;  // in double, as every sum over many elements
        for (int64_t c = 0; c < classes; ++c)
          s += std::exp(row[c * stride] - m);
        lse[r] = static_cast<T>(m + std::log(s));
        if (labels_) {
          sum += lse[r] - row[target.data<int64_t>()[r] * stride];
        } else {
          const T* t = target.data<T>() + scores_.Offset(r);
          for (int64_t c = 0; c < classes; ++c)
            sum += t[c * stride] * (lse[r] - row[c * stride]);
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
    const Shape& shape = ctx.input(0).shape();
    Tensor dx = ctx.needs_grad(0) ? Tensor::Empty(dtype, shape) : Tensor();
    Tensor dt = ctx.needs_grad(1) ? Tensor::Empty(dtype, shape) : Tensor();
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T dy = ctx.grad_output(0).data<T>()[0];
      const T* x = ctx.input(0).data<T>();
      const T* lse = ctx.saved()[0].data<T>();
      const int64_t classes = scores_.classes, stride = scores_.inner;
      for (int64_t r = 0; r < scores_.rows(); ++r) {
        const int64_t offset = scores_.Offset(r);
        const T* row = x + offset;
        if (dx.defined()) {
          T* d = dx.data<T>() + offset;
          if (labels_) {
            const int64_t label = ctx.input(1).data<int64_t>()[r];
            for (int64_t c = 0; c < classes; ++c) {
              const T onehot = c == label ? T(1) : T(0);
              d[c * stride] =
                  ScaleTerm(std::exp(row[c * stride] - lse[r]) - onehot, dy);
            }
          } else {
            const T* t = ctx.input(1).data<T>() + offset;
            double sum = 0;
            for (int64_t c = 0; c < classes; ++c) sum += t[c * stride];
            const T total = static_cast<T>(sum);
            for (int64_t c = 0; c < classes; ++c) {
              d[c * stride] = ScaleTerm(
                  std::exp(row[c * stride] - lse[r]) * total - t[c * stride],
                  dy);
            }
          }
        }
        if (dt.defined()) {
          T* d = dt.data<T>() + offset;
          for (int64_t c = 0; c < classes; ++c) {
            d[c * stride] = ScaleTerm(lse[r] - row[c * stride], dy);
          }
        }
      }
    });
    if (dx.defined()) ctx.SetGradInput(0, std::move(dx));
    if (dt.defined()) ctx.SetGradInput(1, std::move(dt));
    return absl::OkStatus();
  }

 private:
  ClassScores scores_;
  bool labels_ = false;
};

REGISTER_OP(LossSchema(
    "CrossEntropyLoss",
    "cross-entropy of softmax(logits) against class labels or class "
    "probabilities; logits [N, C, d...] or [C], target int64 [N, d...] (0-d "
    "for [C]) in [0, C) or float of the logits' shape; reduction over the "
    "N·d... rows; a scalar",
    "logits", ClassLossFactory(CrossEntropyLossOp::Create, true)));

}  // namespace
}  // namespace gradserve
