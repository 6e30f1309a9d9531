// CrossEntropyLoss: logits x [N, C, d1, ..., dk] (or unbatched [C]) against
// class labels (int64 [N, d1, ..., dk], or 0-d) or class probabilities
// (float, x's shape), with an optional class weight w [C] and, for labels,
// ignore_index, as torch.nn.functional.cross_entropy. Per row (one per
// sample and position), with the log-sum-exp
// lse = m + log Σ_c e^(x_c − m), m = max_c x_c (no overflow):
//   labels:        w_t·(lse − x_t)             (0 where t = ignore_index)
//   probabilities: Σ_c w_c·t_c·(lse − x_c)
// "mean" divides labels by the kept rows' total weight w_t (their count
// without weights), probabilities by the number of rows N·d1·...·dk (not
// by C), as torch does; "none" returns the rows' terms, [N, d...].
// label_smoothing ε mixes the target with the uniform distribution as
// torch does: a probability target becomes (1 − ε)·t + ε/C; a label row's
// term (1 − ε)·w_t·(lse − x_t) + ε/C·Σ_c w_c·(lse − x_c).
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

class CrossEntropyLossOp : public ClassLossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    const TensorMeta& target = c.input(1);
    const Shape& x = c.shape(0);
    const Shape label_shape =
        x.size() < 2 ? Shape{} : ClassScores::LabelShape(x);
    const bool labels =
        target.dtype == DType::kInt64 && target.shape == label_shape;
    const bool probabilities =
        target.dtype == c.float_dtype() && target.shape == x;
    auto op = std::make_unique<CrossEntropyLossOp>();
    RETURN_IF_ERROR(op->InitClassLoss(c, false));
    if (!labels && !probabilities) {
      return c.Error(c.Describe(1), " must be int64 class labels of shape ",
                     ShapeToString(label_shape), " or ",
                     DTypeName(c.float_dtype()),
                     " class probabilities of shape ", ShapeToString(x),
                     ", got ", target.ToString());
    }
    if (probabilities && op->ignore() != -100) {
      return c.attrs().Invalid("ignore_index",
                               "-100 (unset) for class probabilities, as in "
                               "PyTorch: it applies to class labels");
    }
    op->labels_ = labels;
    op->smoothing_ = c.attrs().GetFloat("label_smoothing");
    if (!(op->smoothing_ >= 0 && op->smoothing_ <= 1)) {
      return c.attrs().Invalid("label_smoothing", "in [0, 1]");
    }
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override {
    // max, subtract, exp, add per element for lse; the probability target's
    // weighted sum adds a subtract, multiply and add per element.
    return MulSat(MulSat(scores().rows(), scores().classes), labels_ ? 4 : 7);
  }

  int64_t ExtraBytes() const override {
    return MulSat(scores().rows(),
                  static_cast<int64_t>(DTypeSize(outputs_[0].dtype)));
  }

  // Backward recomputes softmax = e^(x − lse) from the saved logits and the
  // per-row lse Forward keeps (ctx.Save, one value per row). Saving softmax
  // itself would cost C values per row, and −log_softmax (the probability
  // target's gradient) cannot be recovered from it accurately where softmax
  // underflows; x − lse gives both exactly as Forward had them.
  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    const bool any =
        needs_grad[0] || needs_grad[1] || WantsWeightGrad(needs_grad);
    if (!any) return s;
    s.inputs.push_back(0);
    if (needs_grad[0] || WantsWeightGrad(needs_grad) || has_weight()) {
      s.inputs.push_back(1);
    }
    if (has_weight()) s.inputs.push_back(kWeight);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& target = ctx.input(1);
    if (labels_) RETURN_IF_ERROR(CheckTargetLabels(target));
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(y.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* x = ctx.input(0).data<T>();
      Tensor lse_tensor = Tensor::Empty(y.dtype(), {scores().rows()});
      T* lse = lse_tensor.data<T>();
      for (int64_t r = 0; r < scores().rows(); ++r) {
        lse[r] = LogSumExp(x + scores().Offset(r));
      }
      if (labels_) {
        const Labels<T> labels(ctx, *this);
        const T* w = has_weight() ? ctx.input(kWeight).data<T>() : nullptr;
        WriteLoss<T>(y, scores().rows(), labels.total, [&](int64_t r) {
          return LabelTerm(x, lse, labels, w, r);
        });
      } else {
        const T* t = target.data<T>();
        const T* w = has_weight() ? ctx.input(kWeight).data<T>() : nullptr;
        WriteLoss<T>(y, scores().rows(), [&](int64_t r) {
          return ProbabilityTerm(x, t, w, lse, r);
        });
      }
      if (ctx.backward_will_run()) ctx.Save(std::move(lse_tensor));
    });
    return absl::OkStatus();
  }

  // Labels: d/dx_c = w_t·(softmax_c − [c = t]); the weight's gradient sums
  // the rows' lse − x_t into their classes. Probabilities: d/dx_c =
  // softmax_c·Σ_k w_k·t_k − w_c·t_c, d/dt_c = w_c·(lse − x_c), d/dw_c =
  // Σ_rows t_c·(lse − x_c).
  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    Tensor dx = ctx.needs_grad(0) ? Tensor::Zeros(dtype, shape()) : Tensor();
    Tensor dt = ctx.needs_grad(1) ? Tensor::Empty(dtype, shape()) : Tensor();
    Tensor dw = NeedsWeightGrad(ctx) ? Tensor::Zeros(dtype, {scores().classes})
                                     : Tensor();
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T* dy = ctx.grad_output(0).data<T>();
      const T* x = ctx.input(0).data<T>();
      const T* lse = ctx.saved()[0].data<T>();
      if (labels_) {
        BackwardLabels<T>(ctx, dy, x, lse, dx, dw);
      } else {
        BackwardProbabilities<T>(ctx, dy, x, lse, dx, dt, dw);
      }
    });
    if (dx.defined()) ctx.SetGradInput(0, std::move(dx));
    if (dt.defined()) ctx.SetGradInput(1, std::move(dt));
    if (dw.defined()) ctx.SetGradInput(kWeight, std::move(dw));
    return absl::OkStatus();
  }

 private:
  // The log-sum-exp of one row (class c at row[c·inner]), summed in double.
  template <typename T>
  T LogSumExp(const T* row) const {
    const int64_t stride = scores().inner;
    T m = row[0];
    for (int64_t c = 1; c < scores().classes; ++c) {
      m = std::max(m, row[c * stride]);
    }
    double s = 0;
    for (int64_t c = 0; c < scores().classes; ++c) {
      s += std::exp(row[c * stride] - m);
    }
    return static_cast<T>(m + std::log(s));
  }

  // A label row's term: w_t·(lse − x_t), or with label smoothing ε
  // (1 − ε)·w_t·(lse − x_t) + ε/C·Σ_c w_c·(lse − x_c); 0 for an ignored row.
  template <typename T>
  T LabelTerm(const T* x, const T* lse, const Labels<T>& labels, const T* w,
              int64_t r) const {
    if (!labels.kept(r)) return T(0);
    const T nll = labels.w(r) * (lse[r] - x[labels.at(r)]);
    if (smoothing_ == 0) return nll;
    const int64_t offset = scores().Offset(r);
    double smooth = 0;
    for (int64_t c = 0; c < scores().classes; ++c) {
      smooth += (w ? w[c] : T(1)) * (lse[r] - x[offset + c * scores().inner]);
    }
    return static_cast<T>((1 - smoothing_) * nll +
                          smoothing_ / scores().classes * smooth);
  }

  // A probability target with label smoothing ε: (1 − ε)·t + ε/C.
  template <typename T>
  T Smoothed(T t) const {
    if (smoothing_ == 0) return t;
    return static_cast<T>((1 - smoothing_) * t + smoothing_ / scores().classes);
  }

  // Σ_c w_c·t_c·(lse − x_c) over row r (w_c = 1 without weights; t
  // smoothed), in double.
  template <typename T>
  T ProbabilityTerm(const T* x, const T* t, const T* w, const T* lse,
                    int64_t r) const {
    const int64_t offset = scores().Offset(r), stride = scores().inner;
    double sum = 0;
    for (int64_t c = 0; c < scores().classes; ++c) {
      const int64_t i = offset + c * stride;
      const T ti = Smoothed(t[i]);
      sum += (w ? w[c] * ti : ti) * (lse[r] - x[i]);
    }
    return static_cast<T>(sum);
  }

  template <typename T>
  void BackwardLabels(const BackwardContext& ctx, const T* dy, const T* x,
                      const T* lse, Tensor& dx, Tensor& dw) const {
    const Labels<T> labels(ctx, *this);
    const T* weights = has_weight() ? ctx.input(kWeight).data<T>() : nullptr;
    double all = 0;  // Σ_k w_k
    for (int64_t c = 0; c < scores().classes; ++c)
      all += ClassWeight(weights, c);
    const T total_weight = static_cast<T>(all);
    const int64_t stride = scores().inner;
    if (dx.defined()) {
      for (int64_t r = 0; r < scores().rows(); ++r) {
        if (!labels.kept(r)) continue;
        const int64_t offset = scores().Offset(r);
        const T* row = x + offset;
        T* d = dx.data<T>() + offset;
        const int64_t label = labels.t[r];
        const T w = labels.w(r);
        for (int64_t c = 0; c < scores().classes; ++c) {
          const T onehot = c == label ? T(1) : T(0);
          const T p = std::exp(row[c * stride] - lse[r]);
          T g = w * (p - onehot);
          if (smoothing_ != 0) {
            // (1 − ε)·w_t·(p_c − [c = t]) + ε/C·(p_c·Σ_k w_k − w_c)
            g = static_cast<T>(
                (1 - smoothing_) * g +
                smoothing_ / scores().classes *
                    (p * total_weight - ClassWeight(weights, c)));
          }
          d[c * stride] = ScaleTerm(g, dy, r, labels.total);
        }
      }
    }
    if (!dw.defined()) return;
    if (smoothing_ == 0) {
      AddWeightGrad<T>(labels, dy, dw,
                       [&](int64_t r) { return lse[r] - x[labels.at(r)]; });
      return;
    }
    SmoothedWeightGrad<T>(labels, weights, dy, x, lse, dw);
  }

  template <typename T>
  static T ClassWeight(const T* w, int64_t c) {
    return w ? w[c] : T(1);
  }

  // dL/dw_c with label smoothing: each kept row's ∂term/∂w_c =
  // (1 − ε)·[c = t]·(lse − x_t) + ε/C·(lse − x_c), times dL/d(term); under
  // "mean", L = Σ term / W with W = Σ w_t adds −L·n_c/W (n_c rows of
  // class c).
  template <typename T>
  void SmoothedWeightGrad(const Labels<T>& labels, const T* w, const T* dy,
                          const T* x, const T* lse, Tensor& dw) const {
    const int64_t classes = scores().classes, stride = scores().inner;
    const double share = smoothing_ / classes;
    double loss = 0;
    if (mean()) {
      for (int64_t r = 0; r < scores().rows(); ++r) {
        loss += LabelTerm(x, lse, labels, w, r);
      }
      loss /= labels.total;
    }
    T* d = dw.data<T>();
    for (int64_t r = 0; r < scores().rows(); ++r) {
      if (!labels.kept(r)) continue;
      const int64_t offset = scores().Offset(r);
      const double g = mean() ? static_cast<double>(dy[0]) / labels.total
                              : static_cast<double>(ScaleTerm(T(1), dy, r));
      for (int64_t c = 0; c < classes; ++c) {
        double partial = share * (lse[r] - x[offset + c * stride]);
        if (c == labels.t[r]) {
          partial += (1 - smoothing_) * (lse[r] - x[labels.at(r)]);
          if (mean()) partial -= loss;
        }
        d[c] += static_cast<T>(g * partial);
      }
    }
  }

  template <typename T>
  void BackwardProbabilities(const BackwardContext& ctx, const T* dy,
                             const T* x, const T* lse, Tensor& dx, Tensor& dt,
                             Tensor& dw) const {
    const T* t = ctx.input(1).defined() ? ctx.input(1).data<T>() : nullptr;
    const T* w = has_weight() ? ctx.input(kWeight).data<T>() : nullptr;
    const int64_t stride = scores().inner;
    for (int64_t r = 0; r < scores().rows(); ++r) {
      const int64_t offset = scores().Offset(r);
      const T* row = x + offset;
      if (dx.defined()) {
        const T weighted = WeightedSum(t, w, offset);
        T* d = dx.data<T>() + offset;
        for (int64_t c = 0; c < scores().classes; ++c) {
          const int64_t i = c * stride;
          const T wc = w ? w[c] : T(1);
          d[i] = ScaleTerm(std::exp(row[i] - lse[r]) * weighted -
                               wc * Smoothed(t[offset + i]),
                           dy, r);
        }
      }
      for (int64_t c = 0; c < scores().classes; ++c) {
        const int64_t i = offset + c * stride;
        if (dt.defined()) {
          dt.data<T>()[i] = ScaleTerm(static_cast<T>(1 - smoothing_) *
                                          (w ? w[c] : T(1)) * (lse[r] - x[i]),
                                      dy, r);
        }
        if (dw.defined()) {
          dw.data<T>()[c] += ScaleTerm(Smoothed(t[i]) * (lse[r] - x[i]), dy, r);
        }
      }
    }
  }

  // Σ_k w_k·t_k over the row at `offset` (w_k = 1 without weights), in
  // double.
  template <typename T>
  T WeightedSum(const T* t, const T* w, int64_t offset) const {
    double sum = 0;
    for (int64_t c = 0; c < scores().classes; ++c) {
      const T tc = Smoothed(t[offset + c * scores().inner]);
      sum += w ? w[c] * tc : tc;
    }
    return static_cast<T>(sum);
  }

  bool labels_ = false;
  double smoothing_ = 0;  // label_smoothing
};

REGISTER_OP(LossSchema(
    "CrossEntropyLoss",
    "cross-entropy of softmax(logits) against class labels or class "
    "probabilities; logits [N, C, d...] or [C], target int64 [N, d...] (0-d "
    "for [C]) in [0, C) or float of the logits' shape, class weight [C] "
    "optional; reduction over the N·d... rows (labels equal to ignore_index "
    "left out)",
    "logits", ClassLossFactory(CrossEntropyLossOp::Create, true),
    {{"weight", /*optional=*/true}},
    {IgnoreIndexAttr(),
     {"label_smoothing", AttrType::kFloat, AttrValue(0.0),
      "ε in [0, 1]: the target mixed with the uniform distribution, "
      "(1 − ε)·target + ε/C, as torch's label_smoothing"}}));

}  // namespace
}  // namespace gradserve
