// Shared pieces of the loss ops: the `reduction` attribute, the scalar output,
// the [N, C] score and class-label checks, data errors found in Forward, and
// the template of the pointwise losses (MSELoss, BCELoss, BCEWithLogitsLoss).
// oneDNN 2.6 has no loss primitive: every loss is a plain loop templated on
// the element type, serving float32 and the float64 reference alike.
#ifndef GRADSERVE_CORE_OPS_LOSS_UTIL_H_
#define GRADSERVE_CORE_OPS_LOSS_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/op.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/status_macros.h"

namespace gradserve {

// The schema every loss shares: inputs (`first`, "target"), one scalar
// output "loss", and the `reduction` attribute.
inline OpSchema LossSchema(std::string name, std::string description,
                           std::string first, OpFactory create) {
  OpSchema s;
  s.name = std::move(name);
  s.description = std::move(description);
  s.inputs = {{std::move(first)}, {"target"}};
  s.outputs = {"loss"};
  s.attrs = {{"reduction", AttrType::kString, AttrValue(std::string("mean")),
              "\"mean\" (the summed terms divided by their count) or \"sum\""}};
  s.create = std::move(create);
  return s;
}

// Base of the loss ops: a scalar output of the run's float dtype, the
// reduction, and the wording of errors that only Forward can find (bad
// labels, probabilities out of range).
class LossOp : public Op {
 protected:
  // Reads `reduction` and sets the scalar output; `terms` is the count
  // "mean" divides by.
  absl::Status InitLoss(const OpConfig& c, int64_t terms) {
    const std::string& reduction = c.attrs().GetString("reduction");
    if (reduction == "mean") {
      divisor_ = terms;
    } else if (reduction == "sum") {
      divisor_ = 1;
    } else {
      return c.attrs().Invalid("reduction", "\"mean\" or \"sum\"");
    }
    // Forward has no OpConfig: keep c.Error()'s "node 'n' (Op): " prefix.
    error_prefix_ = std::string(c.Error().message());
    for (int i = 0; i < c.num_inputs(); ++i)
      described_.push_back(c.Describe(i));
    outputs_ = {{c.float_dtype(), {}}};
    return absl::OkStatus();
  }

  // The summed terms reduced. Under "mean" with no terms this is 0 / 0 = NaN,
  // as in torch.
  template <typename T>
  T Reduce(double sum) const {
    return static_cast<T>(sum / static_cast<double>(divisor_));
  }

  // dL/d(one term's input) from the term's own derivative d and the scalar
  // dL/dy: d · dy / N for "mean", d · dy for "sum". Dividing (rather than
  // multiplying by 1/N) keeps CrossEntropy's (Y − T)/N exact for dy = 1.
  template <typename T>
  T ScaleTerm(T d, T dy) const {
    return d * dy / static_cast<T>(divisor_);
  }

  // INVALID_ARGUMENT "node 'n' (Op): <input i described> <parts...>".
  template <typename... Args>
  absl::Status DataError(int input, const Args&... parts) const {
    return absl::InvalidArgumentError(
        absl::StrCat(error_prefix_, described_[input], parts...));
  }

  // Every label of input `input` (int64, one per row) is a class in
  // [0, classes).
  absl::Status CheckLabels(int input, const Tensor& labels,
                           int64_t classes) const {
    const int64_t* t = labels.data<int64_t>();
    for (int64_t n = 0; n < labels.num_elements(); ++n) {
      if (t[n] < 0 || t[n] >= classes) {
        return DataError(input, " has class ", t[n], " at row ", n,
                         ", expected a class in [0, C) with C = ", classes);
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t divisor_ = 1;
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

// A loss that reduces f(a_i, b_i) over two float inputs of one shape (a the
// prediction, b the target). Fn holds the formulas, forward beside backward:
//   kFlopsPerElement;
//   kFirstInputIsProbability: Forward rejects a outside [0, 1];
//   kTargetGradReadsTarget: whether GradB takes (a, b) or only (a);
//   template <typename T> static T Loss(T a, T b);   // f
//   template <typename T> static T GradA(T a, T b);  // ∂f/∂a
//   template <typename T> static T GradB(T a[, T b]);  // ∂f/∂b
template <typename Fn>
class PointwiseLossOp : public LossOp {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    RETURN_IF_ERROR(c.ExpectFloat(1));
    if (c.shape(1) != c.shape(0)) {
      return c.Error(c.Describe(1), " must have the shape of ", c.Describe(0),
                     ", ", ShapeToString(c.shape(0)), ", got ",
                     ShapeToString(c.shape(1)));
    }
    auto op = std::make_unique<PointwiseLossOp>();
    op->count_ = c.input(0).num_elements();
    RETURN_IF_ERROR(op->InitLoss(c, op->count_));
    return MakeOp(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(Fn::kFlopsPerElement, count_);
  }

  SavedValues Saves(const std::vector<bool>& needs_grad) const override {
    SavedValues s;
    if (needs_grad[0] || needs_grad[1]) s.inputs.push_back(0);
    if (needs_grad[0] || (needs_grad[1] && Fn::kTargetGradReadsTarget)) {
      s.inputs.push_back(1);
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
      double sum = 0;
      for (int64_t i = 0; i < count_; ++i) {
        sum += Fn::template Loss<T>(a[i], b[i]);
      }
      y.data<T>()[0] = Reduce<T>(sum);
      return absl::OkStatus();
    });
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    const Shape& shape = ctx.input(0).shape();
    Tensor da = ctx.needs_grad(0) ? Tensor::Empty(dtype, shape) : Tensor();
    Tensor db = ctx.needs_grad(1) ? Tensor::Empty(dtype, shape) : Tensor();
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T dy = ctx.grad_output(0).template data<T>()[0];
      const T* a = ctx.input(0).template data<T>();
      if (da.defined()) {
        const T* b = ctx.input(1).template data<T>();
        T* p = da.data<T>();
        for (int64_t i = 0; i < count_; ++i) {
          p[i] = ScaleTerm(Fn::template GradA<T>(a[i], b[i]), dy);
        }
      }
      if (db.defined()) {
        T* p = db.data<T>();
        if constexpr (Fn::kTargetGradReadsTarget) {
          const T* b = ctx.input(1).template data<T>();
          for (int64_t i = 0; i < count_; ++i) {
            p[i] = ScaleTerm(Fn::template GradB<T>(a[i], b[i]), dy);
          }
        } else {
          for (int64_t i = 0; i < count_; ++i) {
            p[i] = ScaleTerm(Fn::template GradB<T>(a[i]), dy);
          }
        }
      }
    });
    if (da.defined()) ctx.SetGradInput(0, std::move(da));
    if (db.defined()) ctx.SetGradInput(1, std::move(db));
    return absl::OkStatus();
  }

 private:
  int64_t count_ = 0;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_LOSS_UTIL_H_
