// Shared pieces of the loss ops: the `reduction` attribute ("mean", "sum",
// "none"), the output, the class-score layout and label checks, data errors
// found in Forward, and the template of the pointwise losses (MSELoss,
// BCELoss, BCEWithLogitsLoss) with their optional weights.
// oneDNN 2.6 has no loss primitive: every loss is a plain loop templated on
// the element type, serving float32 and the float64 reference alike.
#ifndef GRADSERVE_CORE_OPS_LOSS_UTIL_H_
#define GRADSERVE_CORE_OPS_LOSS_UTIL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/op.h"
#include "core/ops/broadcast.h"
#include "core/ops/op_util.h"
#include "core/ops/reduction.h"
#include "core/ops/unbatched.h"
#include "core/status_macros.h"

namespace gradserve {

// The schema every loss shares: inputs (`first`, "target", then `extra`,
// optional ones such as a weight), one output "loss", and the `reduction`
// attribute (then `attrs`).
inline OpSchema LossSchema(std::string name, std::string description,
                           std::string first, OpFactory create,
                           std::vector<InputSpec> extra = {},
                           std::vector<AttrSpec> attrs = {}) {
  OpSchema s;
  s.name = std::move(name);
  s.description = std::move(description);
  s.inputs = {{std::move(first)}, {"target"}};
  s.inputs.insert(s.inputs.end(), extra.begin(), extra.end());
  s.outputs = {"loss"};
  s.attrs = {{"reduction", AttrType::kString, AttrValue(std::string("mean")),
              "\"mean\" (the summed terms over their count, or over the "
              "targets' total class weight), \"sum\", or \"none\" (the "
              "terms themselves)"}};
  s.attrs.insert(s.attrs.end(), attrs.begin(), attrs.end());
  s.create = std::move(create);
  return s;
}

// Base of the loss ops: the output (a scalar of the run's float dtype, or
// the terms under "none"), the reduction, and the wording of errors that
// only Forward can find (bad labels, probabilities out of range).
class LossOp : public Op {
 protected:
  // Reads `reduction` and sets the output: a scalar, or `term_shape` for
  // "none"; `terms` is the count "mean" divides by unless told otherwise.
  // With `batch`, "batchmean" (KLDivLoss's) is the sum over `batch`.
  absl::Status InitLoss(const OpConfig& c, int64_t terms,
                        const Shape& term_shape,
                        std::optional<int64_t> batch = std::nullopt) {
    const std::string& reduction = c.attrs().GetString("reduction");
    const bool batchmean = batch && reduction == "batchmean";
    mean_ = reduction == "mean" || batchmean;
    none_ = reduction == "none";
    if (!mean_ && !none_ && reduction != "sum") {
      return c.attrs().Invalid("reduction",
                               batch ? "\"mean\", \"batchmean\", \"sum\" or "
                                       "\"none\""
                                     : "\"mean\", \"sum\" or \"none\"");
    }
    divisor_ = batchmean ? *batch : terms;
    // Forward has no OpConfig: keep c.Error()'s "node 'n' (Op): " prefix.
    error_prefix_ = std::string(c.Error().message());
    for (int i = 0; i < c.num_inputs(); ++i)
      described_.push_back(c.Describe(i));
    outputs_ = {{c.float_dtype(), none_ ? term_shape : Shape{}}};
    return absl::OkStatus();
  }

  bool mean() const { return mean_; }
  bool none() const { return none_; }

  // Writes y from the terms term(i), i in [0, n): the terms themselves for
  // "none", else their sum (in double), over `divisor` for "mean". Under
  // "mean" with no terms this is 0 / 0 = NaN, as in torch.
  template <typename T, typename F>
  void WriteLoss(Tensor& y, int64_t n, double divisor, F&& term) const {
    T* yp = y.data<T>();
    if (none_) {
      for (int64_t i = 0; i < n; ++i) yp[i] = term(i);
      return;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += term(i);
    yp[0] = static_cast<T>(mean_ ? sum / divisor : sum);
  }
  template <typename T, typename F>
  void WriteLoss(Tensor& y, int64_t n, F&& term) const {
    WriteLoss<T>(y, n, static_cast<double>(divisor_), term);
  }

  // dL/d(term i's input) from the term's own derivative d and dL/dy: d·dy_i
  // for "none", d·dy / divisor for "mean", d·dy for "sum". Dividing (rather
  // than multiplying by 1/N) keeps CrossEntropy's (Y − T)/N exact for
  // dy = 1.
  template <typename T>
  T ScaleTerm(T d, const T* dy, int64_t i, double divisor) const {
    if (none_) return d * dy[i];
    return mean_ ? d * dy[0] / static_cast<T>(divisor) : d * dy[0];
  }
  template <typename T>
  T ScaleTerm(T d, const T* dy, int64_t i) const {
    return ScaleTerm(d, dy, i, static_cast<double>(divisor_));
  }

  // INVALID_ARGUMENT "node 'n' (Op): <input i described> <parts...>".
  template <typename... Args>
  absl::Status DataError(int input, const Args&... parts) const {
    return absl::InvalidArgumentError(
        absl::StrCat(error_prefix_, described_[input], parts...));
  }

  // Every label of input `input` (int64, one per row) but `ignore` is a
  // class in [0, classes).
  absl::Status CheckLabels(int input, const Tensor& labels, int64_t classes,
                           int64_t ignore) const {
    const int64_t* t = labels.data<int64_t>();
    for (int64_t n = 0; n < labels.num_elements(); ++n) {
      if (t[n] != ignore && (t[n] < 0 || t[n] >= classes)) {
        return DataError(input, " has class ", t[n], " at row ", n,
                         ", expected a class in [0, C) with C = ", classes,
                         " (or ignore_index ", ignore, ")");
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t divisor_ = 1;
  bool mean_ = true, none_ = false;
  std::string error_prefix_;
  std::vector<std::string> described_;
};

// Class scores x [N, C, d1, ..., dk] (k >= 0) as PyTorch's class losses
// take them: N·S rows of C classes, S = d1·...·dk; class c of row r lies at
// Offset(r) + c·S.
struct ClassScores {
  int64_t n = 0, classes = 0, inner = 1;

  int64_t rows() const { return n * inner; }
  int64_t Offset(int64_t r) const {
    return (r / inner) * classes * inner + r % inner;
  }
  // The labels' shape: x's without the class dim.
  static Shape LabelShape(const Shape& x) {
    Shape s = x;
    s.erase(s.begin() + 1);
    return s;
  }
};

// Checks input 0 is float [N, C, d...] with C >= 1 (an unbatched [C] is
// the class loss's Unbatched adapter's) and returns its layout.
inline absl::StatusOr<ClassScores> ClassScoresShape(const OpConfig& c) {
  RETURN_IF_ERROR(c.ExpectFloat(0));
  const Shape& x = c.shape(0);
  if (x.size() < 2) {
    return c.Error(c.Describe(0),
                   " must be [N, C, d...] or [C] class scores, got shape ",
                   ShapeToString(x));
  }
  if (x[1] == 0) {
    return c.Error(c.Describe(0), " must have at least one class, got shape ",
                   ShapeToString(x));
  }
  ClassScores s;
  s.n = x[0];
  s.classes = x[1];
  s.inner = ElementCount(absl::MakeConstSpan(x).subspan(2));
  return s;
}

// ignore_index, as CrossEntropyLoss and NLLLoss take it.
inline AttrSpec IgnoreIndexAttr() {
  return {"ignore_index", AttrType::kInt, AttrValue(int64_t{-100}),
          "rows whose label is this are left out (class labels only)"};
}

// Base of the class losses (CrossEntropyLoss, NLLLoss): scores x
// [N, C, d...], target (labels, or CrossEntropyLoss's probabilities), an
// optional class weight [C] (input 2) and ignore_index.
class ClassLossOp : public LossOp {
 protected:
  static constexpr int kWeight = 2;

  // Checks x and the weight, reads ignore_index, and sets the output: a
  // scalar, or the labels' shape [N, d...] under "none". With `labels` the
  // target must be int64 of that shape.
  absl::Status InitClassLoss(const OpConfig& c, bool labels) {
    ASSIGN_OR_RETURN(scores_, ClassScoresShape(c));
    shape_ = c.shape(0);
    const Shape label_shape = ClassScores::LabelShape(shape_);
    if (labels) RETURN_IF_ERROR(c.ExpectShape(1, label_shape));
    if (c.has_input(kWeight)) {
      RETURN_IF_ERROR(c.ExpectFloat(kWeight));
      RETURN_IF_ERROR(c.ExpectShape(kWeight, {scores_.classes}));
      has_weight_ = true;
    }
    ignore_ = c.attrs().GetInt("ignore_index");
    return InitLoss(c, scores_.rows(), label_shape);
  }

  const ClassScores& scores() const { return scores_; }
  const Shape& shape() const { return shape_; }
  bool has_weight() const { return has_weight_; }
  int64_t ignore() const { return ignore_; }
  bool WantsWeightGrad(const std::vector<bool>& needs_grad) const {
    return has_weight_ && needs_grad.size() > kWeight && needs_grad[kWeight];
  }
  bool NeedsWeightGrad(const BackwardContext& ctx) const {
    return has_weight_ && ctx.needs_grad(kWeight);
  }
  absl::Status CheckTargetLabels(const Tensor& target) const {
    return CheckLabels(1, target, scores_.classes, ignore_);
  }

  // The labels of a run: per row r, whether it is kept (its label is not
  // ignore_index), its class weight, and where its label's score lies;
  // `total` is the kept rows' total weight ("mean" divides by it).
  template <typename T>
  struct Labels {
    template <typename Context>
    Labels(const Context& ctx, const ClassLossOp& op)
        : op(op),
          t(ctx.input(1).template data<int64_t>()),
          weight(op.has_weight_ ? ctx.input(kWeight).template data<T>()
                                : nullptr) {
      for (int64_t r = 0; r < op.scores_.rows(); ++r) {
        if (kept(r)) total += static_cast<double>(w(r));
      }
    }
    bool kept(int64_t r) const { return t[r] != op.ignore_; }
    T w(int64_t r) const { return weight ? weight[t[r]] : T(1); }
    int64_t at(int64_t r) const {
      return op.scores_.Offset(r) + t[r] * op.scores_.inner;
    }

    const ClassLossOp& op;
    const int64_t* t;
    const T* weight;
    double total = 0;
  };

  // dL/dweight into dw (zeroed, [C]) from each kept row's unweighted term
  // term(r): term·dL/d(row) into the row's class for "sum" and "none"; for
  // "mean", L = Σ w·term / W gives dy·(term − L)/W.
  template <typename T, typename F>
  void AddWeightGrad(const Labels<T>& labels, const T* dy, Tensor& dw,
                     F&& term) const {
    T* d = dw.data<T>();
    double loss = 0;
    if (mean()) {
      for (int64_t r = 0; r < scores_.rows(); ++r) {
        if (labels.kept(r)) loss += static_cast<double>(labels.w(r) * term(r));
      }
      loss /= labels.total;
    }
    for (int64_t r = 0; r < scores_.rows(); ++r) {
      if (!labels.kept(r)) continue;
      const T g = mean()
                      ? static_cast<T>((term(r) - loss) / labels.total) * dy[0]
                      : ScaleTerm(term(r), dy, r);
      d[labels.t[r]] += g;
    }
  }

 private:
  ClassScores scores_;
  Shape shape_;
  bool has_weight_ = false;
  int64_t ignore_ = -100;
};

// The factory of a class loss (CrossEntropyLoss, NLLLoss): `create` for
// [N, C, d...] scores, and for unbatched [C] ones with a 0-d label (or
// float [C] probabilities, when the loss takes them) on a batch of one.
inline OpFactory ClassLossFactory(OpFactory create, bool probabilities) {
  return [create = std::move(create), probabilities](
             const OpConfig& c) -> absl::StatusOr<std::unique_ptr<Op>> {
    if (c.has_input(0) && c.shape(0).size() == 1 && c.has_input(1)) {
      const TensorMeta& t = c.input(1);
      const bool label = t.dtype == DType::kInt64 && t.shape.empty();
      const bool probs =
          probabilities && t.dtype == c.float_dtype() && t.shape == c.shape(0);
      if (!label && !probs) {
        return c.Error(c.Describe(1), " must be a 0-d int64 class label",
                       probabilities ? " or class probabilities of shape " : "",
                       probabilities ? ShapeToString(c.shape(0)) : "",
                       " for unbatched ", c.Describe(0), " ",
                       ShapeToString(c.shape(0)), ", got ", t.ToString());
      }
    }
    return CreateMaybeUnbatched(c, 2, {0, 1}, create);
  };
}

// `t` (of shape `from`, broadcasting to `to`) repeated to `to`, as values
// of T; empty when t is undefined (an optional input left out).
template <typename T>
std::vector<T> BroadcastValues(const Tensor& t, const Shape& from,
                               const Shape& to) {
  if (!t.defined()) return {};
  std::vector<T> out(static_cast<size_t>(ElementCount(to)));
  const T* in = t.data<T>();
  ForEachBroadcast(to, from, from,
                   [&](int64_t o, int64_t i, int64_t) { out[o] = in[i]; });
  return out;
}

// The defaults of a PointwiseLossOp's formulas (below): no attributes, no
// pos_weight, no "batchmean".
struct PointwiseLossFormula {
  static constexpr bool kPosWeight = false;
  static constexpr bool kBatchMean = false;
  // Reads the formula's attributes (SmoothL1Loss's beta), before anything
  // is allocated.
  absl::Status Init(const OpConfig&) { return absl::OkStatus(); }
};

// A loss of terms w_i·f(a_i, b_i) over two float inputs of one shape (a the
// prediction, b the target), with an optional weight w (input 2, any shape
// that broadcasts to a's; 1 without). Fn holds the formulas, forward beside
// backward:
//   kFlopsPerElement;
//   kFirstInputIsProbability: Forward rejects a outside [0, 1];
//   kTargetGradReadsTarget: whether GradB takes (a, b) or only (a);
//   kPosWeight: input 3 is a pos_weight p (broadcasting to a's shape), and
//     Fn has LossP, GradAP, GradBP, GradP of (a, b, p) for it;
//   kBatchMean: reduction "batchmean" divides the sum by a's first dim;
//   absl::Status Init(const OpConfig&): reads Fn's attributes;
//   template <typename T> T Loss(T a, T b) const;   // f
//   template <typename T> T GradA(T a, T b) const;  // ∂f/∂a
//   template <typename T> T GradB(T a[, T b]) const;  // ∂f/∂b
// (PointwiseLossFormula has the defaults; the formulas may be static.)
// "none" returns the terms, of a's shape. dL/dw sums f·dL/d(term) down to
// w's shape, dL/dp likewise.
template <typename Fn>
class PointwiseLossOp : public LossOp {
 public:
  static constexpr int kWeight = 2, kPosWeight = 3;

  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    RETURN_IF_ERROR(c.ExpectFloat(1));
    const Shape& shape = c.shape(0);
    if (c.shape(1) != shape) {
      return c.Error(c.Describe(1), " must have the shape of ", c.Describe(0),
                     ", ", ShapeToString(shape), ", got ",
                     ShapeToString(c.shape(1)));
    }
    auto op = std::make_unique<PointwiseLossOp>();
    RETURN_IF_ERROR(op->fn_.Init(c));
    op->shape_ = shape;
    op->count_ = c.input(0).num_elements();
    for (int i : {kWeight, kPosWeight}) {
      if (!c.has_input(i)) continue;
      RETURN_IF_ERROR(c.ExpectFloat(i));
      if (BroadcastShape(c.shape(i), shape) != shape) {
        return c.Error(c.Describe(i), " ", ShapeToString(c.shape(i)),
                       " must broadcast to the shape of ", c.Describe(0), ", ",
                       ShapeToString(shape));
      }
      op->extra_[i - kWeight] = c.shape(i);
      op->has_[i - kWeight] = true;
    }
    std::optional<int64_t> batch;
    if constexpr (Fn::kBatchMean) batch = shape.empty() ? 1 : shape[0];
    RETURN_IF_ERROR(op->InitLoss(c, op->count_, shape, batch));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(Fn::kFlopsPerElement, count_);
  }

  // The weights repeated to a's shape, and the full-shape gradients of
  // weights before their sums.
  int64_t ExtraBytes() const override {
    const int64_t n =
        MulSat(count_, static_cast<int64_t>(DTypeSize(outputs_[0].dtype)));
    return MulSat(n, 2 * (has_[0] + has_[1]));
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    auto wants = [&](int i) {
      return static_cast<int>(needs_grad.size()) > i && needs_grad[i];
    };
    const bool any =
        wants(0) || wants(1) || wants(kWeight) || wants(kPosWeight);
    SavedValues s;
    if (!any) return s;
    s.inputs.push_back(0);
    if (wants(0) || wants(kWeight) || wants(kPosWeight) || has_[1] ||
        (wants(1) && Fn::kTargetGradReadsTarget)) {
      s.inputs.push_back(1);
    }
    for (int i : {kWeight, kPosWeight}) {
      if (has_[i - kWeight]) s.inputs.push_back(i);
    }
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    return DispatchFloat(y.dtype(), [&](auto zero) -> absl::Status {
      using T = decltype(zero);
      const T* a = ctx.input(0).template data<T>();
      const T* b = ctx.input(1).template data<T>();
      if constexpr (Fn::kFirstInputIsProbability) {
        for (int64_t i = 0; i < count_; ++i) {
          // Written so that NaN fails too, as torch's check does.
          if (!(a[i] >= T(0) && a[i] <= T(1))) {
            return DataError(0, " has ", a[i], " at flat index ", i,
                             ", expected every element in [0, 1]");
          }
        }
      }
      const Weights<T> w(ctx.input(kWeight), ctx.input(kPosWeight), *this);
      WriteLoss<T>(y, count_,
                   [&](int64_t i) { return w.w(i) * Loss(a[i], b[i], w, i); });
      return absl::OkStatus();
    });
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    std::vector<Tensor> grads(4);
    for (int i = 0; i < ctx.num_inputs(); ++i) {
      if (ctx.needs_grad(i)) grads[i] = Tensor::Empty(dtype, shape_);
    }
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T* dy = ctx.grad_output(0).template data<T>();
      const T* a = ctx.input(0).template data<T>();
      const T* b =
          ctx.input(1).defined() ? ctx.input(1).template data<T>() : nullptr;
      const Weights<T> w(ctx.input(kWeight), ctx.input(kPosWeight), *this);
      for (int64_t i = 0; i < count_; ++i) {
        const T wi = w.w(i);
        if (grads[0].defined()) {
          grads[0].data<T>()[i] =
              ScaleTerm(wi * GradA(a[i], b[i], w, i), dy, i);
        }
        if (grads[1].defined()) {
          grads[1].data<T>()[i] = ScaleTerm(wi * GradB(a[i], b, w, i), dy, i);
        }
        if (grads[kWeight].defined()) {
          grads[kWeight].data<T>()[i] =
              ScaleTerm(Loss(a[i], b[i], w, i), dy, i);
        }
        if constexpr (Fn::kPosWeight) {
          if (grads[kPosWeight].defined()) {
            grads[kPosWeight].data<T>()[i] =
                ScaleTerm(wi * fn_.GradP(a[i], b[i], w.p(i)), dy, i);
          }
        }
      }
    });
    for (int i = 0; i < ctx.num_inputs(); ++i) {
      if (!grads[i].defined()) continue;
      if (i < kWeight) {
        ctx.SetGradInput(i, std::move(grads[i]));
        continue;
      }
      const Shape& to = extra_[i - kWeight];
      Tensor summed = Tensor::Empty(dtype, to);
      Reduction(shape_, BroadcastDims(to, shape_)).Run(grads[i], summed);
      ctx.SetGradInput(i, std::move(summed));
    }
    return absl::OkStatus();
  }

 private:
  // The weight and pos_weight at each element (1 where left out).
  template <typename T>
  struct Weights {
    Weights(const Tensor& weight, const Tensor& pos, const PointwiseLossOp& op)
        : weight(BroadcastValues<T>(weight, op.extra_[0], op.shape_)),
          pos(BroadcastValues<T>(pos, op.extra_[1], op.shape_)) {}
    T w(int64_t i) const { return weight.empty() ? T(1) : weight[i]; }
    T p(int64_t i) const { return pos.empty() ? T(1) : pos[i]; }
    bool has_pos() const { return !pos.empty(); }
    std::vector<T> weight, pos;
  };

  template <typename T>
  T Loss(T a, T b, const Weights<T>& w, int64_t i) const {
    if constexpr (Fn::kPosWeight) {
      if (w.has_pos()) return fn_.LossP(a, b, w.p(i));
    }
    return fn_.template Loss<T>(a, b);
  }
  template <typename T>
  T GradA(T a, T b, const Weights<T>& w, int64_t i) const {
    if constexpr (Fn::kPosWeight) {
      if (w.has_pos()) return fn_.GradAP(a, b, w.p(i));
    }
    return fn_.template GradA<T>(a, b);
  }
  // b is null when Backward did not keep the target (GradB reads only a).
  template <typename T>
  T GradB(T a, const T* b, const Weights<T>& w, int64_t i) const {
    if constexpr (Fn::kPosWeight) {
      if (w.has_pos()) return fn_.GradBP(a, w.p(i));
    }
    if constexpr (Fn::kTargetGradReadsTarget) {
      return fn_.template GradB<T>(a, b[i]);
    } else {
      return fn_.template GradB<T>(a);
    }
  }

  Fn fn_;
  Shape shape_;
  int64_t count_ = 0;
  Shape extra_[2];  // the weight's and pos_weight's shapes
  bool has_[2] = {false, false};
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_LOSS_UTIL_H_
