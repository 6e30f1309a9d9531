// LayerNorm: normalises x over its last `axes` dims (PyTorch's
// normalized_shape = those dims), then scales by weight and shifts by bias
// (both optional, of the normalised dims' shape). x is seen as [M, K] with K
// the normalised elements. float32 runs oneDNN layer normalization; float64
// and empty tensors run loops.
#include <cmath>
#include <optional>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::memory;

enum Input { kX = 0, kWeight = 1, kBias = 2 };

class LayerNormOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(kX));
    const Shape& x = c.shape(kX);
    const int64_t axes = c.attrs().GetInt("axes");
    if (axes < 1 || axes > static_cast<int64_t>(x.size())) {
      return c.attrs().Invalid(
          "axes", absl::StrCat("in [1, ", x.size(), "] for ", c.Describe(kX),
                               " ", ShapeToString(x)));
    }
    const Shape normalized(x.end() - axes, x.end());
    for (int i : {kWeight, kBias}) {
      if (!c.has_input(i)) continue;
      RETURN_IF_ERROR(c.ExpectFloat(i));
      RETURN_IF_ERROR(c.ExpectShape(i, normalized));
    }
    auto op = std::make_unique<LayerNormOp>();
    op->epsilon_ = c.attrs().GetFloat("epsilon");
    // Any epsilon, as PyTorch (Attributes refuses non-finite ones; a
    // negative one may give NaN there too).
    op->cols_ = ElementCount(normalized);
    op->rows_ = op->cols_ == 0 ? 0 : ElementCount(x) / op->cols_;
    op->normalized_ = normalized;
    op->has_weight_ = c.has_input(kWeight);
    op->has_bias_ = c.has_input(kBias);
    op->outputs_ = {c.input(kX)};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(outputs_[0].num_elements(), 8);
  }

  // The per-row statistics Forward keeps, and oneDNN's scale and shift
  // gradients when they are not wanted (the loops, which serve empty x,
  // compute only what is).
  int64_t ExtraBytes() const override {
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    const int64_t scratch =
        RunsOnDnnl(outputs_[0]) ? (has_weight_ + has_bias_) * cols_ : 0;
    return MulSat(dsize, MulSat(2, rows_) + scratch);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    SavedValues s{{kX}, {}};
    if (has_weight_) s.inputs.push_back(kWeight);
    if (has_bias_) s.inputs.push_back(kBias);  // oneDNN's backward reads it
    return s;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0])) return absl::OkStatus();
    return CatchDnnl(node_, [&] {
      auto flags = dnnl::normalization_flags::none;
      if (has_weight_) flags |= dnnl::normalization_flags::use_scale;
      if (has_bias_) flags |= dnnl::normalization_flags::use_shift;
      const auto data = Data();
      const float eps = static_cast<float>(epsilon_);
      const auto kind = info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      dnnl::layer_normalization_forward::primitive_desc fwd(
          dnnl::layer_normalization_forward::desc(kind, data, eps, flags),
          DefaultAttr(), CpuEngine());
      forward_ = MakePrimitive<dnnl::layer_normalization_forward>(fwd);
      // Without dx the loops serve (no x-sized dx nobody asked for).
      if (!info.backward_will_run || !info.needs_grad[kX]) {
        return absl::OkStatus();
      }
      // oneDNN 2.6 has no backward_data with a scale or shift: backward
      // computes their gradients too (Backward drops those not wanted).
      dnnl::layer_normalization_backward::primitive_desc bwd(
          dnnl::layer_normalization_backward::desc(
              has_weight_ || has_bias_ ? dnnl::prop_kind::backward
                                       : dnnl::prop_kind::backward_data,
              data, data, eps, flags),
          DefaultAttr(), CpuEngine(), fwd);
      backward_ = MakePrimitive<dnnl::layer_normalization_backward>(bwd);
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    Tensor& y = ctx.AllocateOutput(0);
    Tensor mean = Tensor::Empty(y.dtype(), {rows_});
    Tensor var = Tensor::Empty(y.dtype(), {rows_});
    if (forward_) {
      DnnlArgs args = {
          {DNNL_ARG_SRC, WrapTensor(Data(), ctx.input(kX))},
          {DNNL_ARG_DST, WrapTensor(Data(), y)},
          {DNNL_ARG_MEAN, WrapTensor(PlainDesc({rows_}), mean)},
          {DNNL_ARG_VARIANCE, WrapTensor(PlainDesc({rows_}), var)}};
      AddAffine(ctx.input(kWeight), ctx.input(kBias), &args);
      RETURN_IF_ERROR(ExecuteDnnl(ctx.dnnl(), node_, *forward_, args));
    } else {
      DispatchFloat(y.dtype(), [&](auto zero) {
        ForwardLoop<decltype(zero)>(ctx.input(kX), ctx.input(kWeight),
                                    ctx.input(kBias), y, mean, var);
      });
    }
    if (ctx.backward_will_run()) {
      ctx.Save(std::move(mean));
      ctx.Save(std::move(var));
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    // The loops accumulate dw and db.
    auto wanted = [&](int i) {
      return ctx.needs_grad(i) ? Tensor::Zeros(dtype, normalized_) : Tensor();
    };
    Tensor dx = ctx.needs_grad(kX) ? Tensor::Empty(outputs_[0]) : Tensor();
    Tensor dw = wanted(kWeight);
    Tensor db = wanted(kBias);
    if (backward_) {
      RETURN_IF_ERROR(BackwardDnnl(ctx, dx, dw, db));
    } else {
      DispatchFloat(dtype, [&](auto zero) {
        BackwardLoop<decltype(zero)>(ctx.input(kX), ctx.input(kWeight),
                                     ctx.grad_output(0), ctx.saved()[0],
                                     ctx.saved()[1], dx, dw, db);
      });
    }
    if (dx.defined()) ctx.SetGradInput(kX, std::move(dx));
    if (dw.defined()) ctx.SetGradInput(kWeight, std::move(dw));
    if (db.defined()) ctx.SetGradInput(kBias, std::move(db));
    return absl::OkStatus();
  }

 private:
  memory::desc Data() const { return PlainDesc({rows_, cols_}); }

  // dx, and dw and db where defined; the primitive writes the gradient of
  // a present weight or bias, wanted or not (then into scratch).
  absl::Status BackwardDnnl(BackwardContext& ctx, Tensor& dx, Tensor& dw,
                            Tensor& db) const {
    const DType dtype = outputs_[0].dtype;
    Tensor dscale =
        dw.defined() || !has_weight_ ? dw : Tensor::Empty(dtype, normalized_);
    Tensor dshift =
        db.defined() || !has_bias_ ? db : Tensor::Empty(dtype, normalized_);
    DnnlArgs args = {
        {DNNL_ARG_SRC, WrapTensor(Data(), ctx.input(kX))},
        {DNNL_ARG_DIFF_DST, WrapTensor(Data(), ctx.grad_output(0))},
        {DNNL_ARG_MEAN, WrapTensor(PlainDesc({rows_}), ctx.saved()[0])},
        {DNNL_ARG_VARIANCE, WrapTensor(PlainDesc({rows_}), ctx.saved()[1])},
        {DNNL_ARG_DIFF_SRC, WrapTensor(Data(), dx)}};
    AddAffine(ctx.input(kWeight), ctx.input(kBias), &args);
    if (has_weight_)
      args[DNNL_ARG_DIFF_SCALE] = WrapTensor(PlainDesc({cols_}), dscale);
    if (has_bias_)
      args[DNNL_ARG_DIFF_SHIFT] = WrapTensor(PlainDesc({cols_}), dshift);
    return ExecuteDnnl(ctx.dnnl(), node_, *backward_, args);
  }

  void AddAffine(const Tensor& weight, const Tensor& bias,
                 DnnlArgs* args) const {
    if (has_weight_)
      (*args)[DNNL_ARG_SCALE] = WrapTensor(PlainDesc({cols_}), weight);
    if (has_bias_)
      (*args)[DNNL_ARG_SHIFT] = WrapTensor(PlainDesc({cols_}), bias);
  }

  template <typename T>
  void ForwardLoop(const Tensor& x, const Tensor& weight, const Tensor& bias,
                   Tensor& y, Tensor& mean, Tensor& var) const {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for (int64_t r = 0; r < rows_; ++r) {
      const T* row = xp + r * cols_;
      T m = 0, v = 0;
      for (int64_t k = 0; k < cols_; ++k) m += row[k];
      m /= static_cast<T>(cols_);
      for (int64_t k = 0; k < cols_; ++k) v += (row[k] - m) * (row[k] - m);
      v /= static_cast<T>(cols_);
      mean.data<T>()[r] = m;
      var.data<T>()[r] = v;
      const T invstd = 1 / std::sqrt(v + static_cast<T>(epsilon_));
      for (int64_t k = 0; k < cols_; ++k) {
        const T w = has_weight_ ? weight.data<T>()[k] : T(1);
        const T b = has_bias_ ? bias.data<T>()[k] : T(0);
        yp[r * cols_ + k] = (row[k] - m) * invstd * w + b;
      }
    }
  }

  // Writes dx and adds into dw and db (zeroed), where defined.
  template <typename T>
  void BackwardLoop(const Tensor& x, const Tensor& weight, const Tensor& dy,
                    const Tensor& mean, const Tensor& var, Tensor& dx,
                    Tensor& dw, Tensor& db) const {
    const T n = static_cast<T>(cols_);
    T* dwp = dw.defined() ? dw.data<T>() : nullptr;
    T* dbp = db.defined() ? db.data<T>() : nullptr;
    for (int64_t r = 0; r < rows_; ++r) {
      const T* row = x.data<T>() + r * cols_;
      const T* g = dy.data<T>() + r * cols_;
      const T m = mean.data<T>()[r];
      const T invstd =
          1 / std::sqrt(var.data<T>()[r] + static_cast<T>(epsilon_));
      // With g' = dy·w: dx = invstd/K·(K·g' - Σg' - x̂·Σ(g'·x̂)).
      T sum = 0, sum_xhat = 0;
      for (int64_t k = 0; k < cols_; ++k) {
        const T gw = g[k] * (has_weight_ ? weight.data<T>()[k] : T(1));
        const T xhat = (row[k] - m) * invstd;
        sum += gw;
        sum_xhat += gw * xhat;
        if (dwp) dwp[k] += g[k] * xhat;
        if (dbp) dbp[k] += g[k];
      }
      if (!dx.defined()) continue;
      for (int64_t k = 0; k < cols_; ++k) {
        const T gw = g[k] * (has_weight_ ? weight.data<T>()[k] : T(1));
        const T xhat = (row[k] - m) * invstd;
        dx.data<T>()[r * cols_ + k] =
            invstd / n * (n * gw - sum - xhat * sum_xhat);
      }
    }
  }

  double epsilon_ = 1e-5;
  int64_t rows_ = 0, cols_ = 0;
  Shape normalized_;
  bool has_weight_ = false, has_bias_ = false;
  std::optional<DnnlPrimitive> forward_, backward_;
};

OpSchema LayerNormSchema() {
  OpSchema s;
  s.name = "LayerNorm";
  s.description =
      "normalises x over its last `axes` dims, then ·weight + bias (both "
      "optional, of those dims' shape)";
  s.inputs = {
      {"x"}, {"weight", /*optional=*/true}, {"bias", /*optional=*/true}};
  s.attrs = {
      {"epsilon", AttrType::kFloat, AttrValue(1e-5), "added to the variance"},
      {"axes", AttrType::kInt, AttrValue(int64_t{1}),
       "how many trailing dims are normalised"}};
  s.create = LayerNormOp::Create;
  return s;
}

REGISTER_OP(LayerNormSchema());

}  // namespace
}  // namespace gradserve
