// BatchNorm over x [N, C], [N, C, L] or [N, C, H, W] per channel C, with
// weight [C] and bias [C] (both optional) and running_mean / running_var [C].
// An empty x (also [0], as PyTorch takes it) gives an empty y and leaves the
// running statistics as they were. epsilon and momentum may be any finite
// values, as in PyTorch.
//
// TRAIN normalises with the batch's statistics (biased variance) and
// updates the running ones as PyTorch does, the variance unbiased:
//   running_mean = (1 - momentum)·running_mean + momentum·mean
//   running_var  = (1 - momentum)·running_var  + momentum·var·n/(n - 1)
// returned as new values of the running_* buffers. EVAL normalises with the
// running statistics. float32 runs oneDNN batch normalization in the input's
// layout (blocked after a convolution); float64 runs loops, as does the
// rarely wanted EVAL gradient of the running statistics themselves.
#include <cmath>
#include <optional>

#include "core/dnnl_util.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

using dnnl::memory;

enum Input { kX = 0, kWeight = 1, kBias = 2, kMean = 3, kVar = 4 };

class BatchNormOp : public Op {
 public:
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c) {
    RETURN_IF_ERROR(c.ExpectFloat(kX));
    const Shape& x = c.shape(kX);
    const bool empty = ElementCount(x) == 0;
    // PyTorch also takes an empty [N] x, whatever the statistics' length.
    if (!(empty && x.size() == 1)) {
      RETURN_IF_ERROR(c.ExpectRankBetween(kX, 2, 4));
    }
    for (int i : {kMean, kVar}) {
      if (c.has_input(i)) continue;
      return c.Error(c.Describe(i),
                     " is required but was not given; inputs are positional "
                     "(x, weight, bias, running_mean, running_var): leave "
                     "weight or bias out with \"\"");
    }
    // An [N] x has as many channels as its statistics say.
    if (x.size() == 1) RETURN_IF_ERROR(c.ExpectRankBetween(kMean, 1, 1));
    const int64_t channels = x.size() == 1 ? c.shape(kMean)[0] : x[1];
    for (int i : {kWeight, kBias, kMean, kVar}) {
      if (!c.has_input(i)) continue;
      RETURN_IF_ERROR(c.ExpectFloat(i));
      RETURN_IF_ERROR(c.ExpectShape(i, {channels}));
    }
    auto op = std::make_unique<BatchNormOp>();
    // Any epsilon and momentum, as PyTorch (Attributes refuses non-finite
    // ones; a negative epsilon may make a variance plus epsilon negative:
    // NaN, as there).
    op->epsilon_ = c.attrs().GetFloat("epsilon");
    op->momentum_ = c.attrs().GetFloat("momentum");
    op->train_ = c.mode() == Mode::kTrain;
    op->empty_ = empty;
    op->channels_ = channels;
    op->per_channel_ = channels == 0 ? 0 : ElementCount(x) / channels;
    if (op->train_ && !empty && op->per_channel_ <= 1) {
      return c.Error(
          "expected more than 1 value per channel when training, got ",
          c.Describe(kX), " ", ShapeToString(x));
    }
    op->has_weight_ = c.has_input(kWeight);
    op->has_bias_ = c.has_input(kBias);
    op->outputs_ = {c.input(kX)};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(outputs_[0].num_elements(), train_ ? 8 : 4);
  }

  // Per-channel tensors beyond the output: TRAIN's batch statistics and
  // new running ones, oneDNN's scale and shift gradients (computed with dx
  // even when not wanted), and the loops' invstd and two double sums. An
  // empty x (EVAL) needs none of them.
  int64_t ExtraBytes() const override {
    if (outputs_[0].num_elements() == 0) return 0;
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    return MulSat(channels_, dsize * ((train_ ? 4 : 0) + 2 + 1) + 2 * 8);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    SavedValues s{{kX}, {}};
    if (has_weight_) s.inputs.push_back(kWeight);
    if (has_bias_) s.inputs.push_back(kBias);  // oneDNN's backward reads it
    if (!train_) s.inputs.insert(s.inputs.end(), {kMean, kVar});
    return s;
  }

  bool HandlesLayouts() const override { return true; }
  std::shared_ptr<const Layout> OutputLayout(int) const override {
    return layout_;
  }

  absl::Status Prepare(const PrepareInfo& info) override {
    if (!RunsOnDnnl(outputs_[0])) return absl::OkStatus();
    needs_running_grads_ = !train_ && info.backward_will_run &&
                           (info.needs_grad[kMean] || info.needs_grad[kVar]);
    return CatchDnnl(node_, [&] {
      layout_ = info.input_layouts[kX];
      data_ = layout_ ? layout_->desc : PlainDesc(outputs_[0].shape);
      auto flags = dnnl::normalization_flags::none;
      if (has_weight_) flags |= dnnl::normalization_flags::use_scale;
      if (has_bias_) flags |= dnnl::normalization_flags::use_shift;
      if (!train_) flags |= dnnl::normalization_flags::use_global_stats;
      const float eps = static_cast<float>(epsilon_);
      const auto kind = train_ || info.backward_will_run
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      dnnl::batch_normalization_forward::primitive_desc fwd(
          dnnl::batch_normalization_forward::desc(kind, data_, eps, flags),
          DefaultAttr(), CpuEngine());
      forward_ = MakePrimitive<dnnl::batch_normalization_forward>(fwd);
      if (!info.backward_will_run || needs_running_grads_ ||
          !info.needs_grad[kX]) {
        return absl::OkStatus();
      }
      // oneDNN 2.6 has no backward_data with a scale or shift: backward
      // computes their gradients too (Backward drops those not wanted).
      dnnl::batch_normalization_backward::primitive_desc bwd(
          dnnl::batch_normalization_backward::desc(
              has_weight_ || has_bias_ ? dnnl::prop_kind::backward
                                       : dnnl::prop_kind::backward_data,
              data_, data_, eps, flags),
          DefaultAttr(), CpuEngine(), fwd);
      backward_ = MakePrimitive<dnnl::batch_normalization_backward>(bwd);
      return absl::OkStatus();
    });
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    Tensor mean = train_ ? Tensor::Empty(dtype, {channels_}) : ctx.input(kMean);
    Tensor var = train_ ? Tensor::Empty(dtype, {channels_}) : ctx.input(kVar);
    if (forward_) {
      RETURN_IF_ERROR(CatchDnnl(node_, [&] {
        Tensor y = EmptyIn(outputs_[0], data_);
        const Tensor x = Reordered(ctx.input(kX), data_, ctx.dnnl());
        DnnlArgs args = {
            {DNNL_ARG_SRC, WrapTensor(data_, x)},
            {DNNL_ARG_DST, WrapTensor(data_, y)},
            {DNNL_ARG_MEAN, WrapTensor(PlainDesc({channels_}), mean)},
            {DNNL_ARG_VARIANCE, WrapTensor(PlainDesc({channels_}), var)}};
        AddAffine(ctx.input(kWeight), ctx.input(kBias), &args);
        ctx.dnnl().Execute(*forward_, args);
        ctx.SetOutput(0, std::move(y));
        return absl::OkStatus();
      }));
    } else {
      Tensor& y = ctx.AllocateOutput(0);
      DispatchFloat(dtype, [&](auto zero) {
        using T = decltype(zero);
        if (train_) BatchStatistics<T>(ctx.input(kX), mean, var);
        Normalize<T>(ctx.input(kX), mean, var, ctx.input(kWeight),
                     ctx.input(kBias), y);
      });
    }
    if (!train_) return absl::OkStatus();
    if (empty_) {
      // No batch statistics: the running ones come back unchanged, as
      // PyTorch leaves them (and Backward finds nothing to sum).
      ctx.UpdateState(kMean, ctx.input(kMean));
      ctx.UpdateState(kVar, ctx.input(kVar));
      if (ctx.backward_will_run()) {
        ctx.Save(mean);
        ctx.Save(var);
      }
      return absl::OkStatus();
    }
    if (ctx.backward_will_run()) {
      ctx.Save(mean);
      ctx.Save(var);
    }
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      const T m = static_cast<T>(momentum_);
      const T unbias =
          static_cast<T>(per_channel_) / static_cast<T>(per_channel_ - 1);
      Tensor new_mean = Tensor::Empty(dtype, {channels_});
      Tensor new_var = Tensor::Empty(dtype, {channels_});
      for (int64_t c = 0; c < channels_; ++c) {
        new_mean.data<T>()[c] =
            (1 - m) * ctx.input(kMean).data<T>()[c] + m * mean.data<T>()[c];
        new_var.data<T>()[c] = (1 - m) * ctx.input(kVar).data<T>()[c] +
                               m * var.data<T>()[c] * unbias;
      }
      ctx.UpdateState(kMean, std::move(new_mean));
      ctx.UpdateState(kVar, std::move(new_var));
    });
    return absl::OkStatus();
  }

  // oneDNN when dx is wanted; the loops otherwise (they compute the
  // per-channel gradients without an x-sized dx nobody asked for), for the
  // EVAL gradients of the running statistics, for float64 and empty x.
  absl::Status Backward(BackwardContext& ctx) const override {
    const Tensor& mean = train_ ? ctx.saved()[0] : ctx.input(kMean);
    const Tensor& var = train_ ? ctx.saved()[1] : ctx.input(kVar);
    if (backward_) return BackwardDnnl(ctx, mean, var);
    // The loops read plain tensors.
    const Tensor x = Plain(ctx.input(kX), ctx.dnnl());
    const Tensor dy = Plain(ctx.grad_output(0), ctx.dnnl());
    const DType dtype = outputs_[0].dtype;
    std::vector<Tensor> grads(5);
    for (int i = 0; i < 5; ++i) {
      // Training normalises with batch statistics: the running ones do not
      // reach the output, and their gradient stays zero.
      if (ctx.needs_grad(i) && (i <= kBias || !train_)) {
        grads[i] = Tensor::Zeros(dtype, i == kX ? x.shape() : Shape{channels_});
      }
    }
    DispatchFloat(dtype, [&](auto zero) {
      BackwardLoop<decltype(zero)>(x, dy, mean, var, ctx.input(kWeight), grads);
    });
    for (int i = 0; i < 5; ++i) {
      if (grads[i].defined()) ctx.SetGradInput(i, std::move(grads[i]));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status BackwardDnnl(BackwardContext& ctx, const Tensor& mean,
                            const Tensor& var) const {
    return CatchDnnl(node_, [&] {
      DnnlRunner& dnnl = ctx.dnnl();
      const DType dtype = outputs_[0].dtype;
      Tensor dx = EmptyIn(outputs_[0], data_);
      // The primitive writes the gradient of a present weight or bias, wanted
      // or not.
      Tensor dscale =
          has_weight_ ? Tensor::Empty(dtype, {channels_}) : Tensor();
      Tensor dshift = has_bias_ ? Tensor::Empty(dtype, {channels_}) : Tensor();
      const auto c_desc = PlainDesc({channels_});
      // Held here: the map's memories point into them until Execute.
      const Tensor x = Reordered(ctx.input(kX), data_, dnnl);
      const Tensor dy = Reordered(ctx.grad_output(0), data_, dnnl);
      DnnlArgs args = {{DNNL_ARG_SRC, WrapTensor(data_, x)},
                       {DNNL_ARG_DIFF_DST, WrapTensor(data_, dy)},
                       {DNNL_ARG_MEAN, WrapTensor(c_desc, mean)},
                       {DNNL_ARG_VARIANCE, WrapTensor(c_desc, var)},
                       {DNNL_ARG_DIFF_SRC, WrapTensor(data_, dx)}};
      AddAffine(ctx.input(kWeight), ctx.input(kBias), &args);
      if (has_weight_) args[DNNL_ARG_DIFF_SCALE] = WrapTensor(c_desc, dscale);
      if (has_bias_) args[DNNL_ARG_DIFF_SHIFT] = WrapTensor(c_desc, dshift);
      dnnl.Execute(*backward_, args);
      ctx.SetGradInput(kX, std::move(dx));
      if (ctx.needs_grad(kWeight)) ctx.SetGradInput(kWeight, std::move(dscale));
      if (ctx.needs_grad(kBias)) ctx.SetGradInput(kBias, std::move(dshift));
      return absl::OkStatus();
    });
  }

  void AddAffine(const Tensor& weight, const Tensor& bias,
                 DnnlArgs* args) const {
    if (has_weight_)
      (*args)[DNNL_ARG_SCALE] = WrapTensor(PlainDesc({channels_}), weight);
    if (has_bias_ && bias.defined()) {
      (*args)[DNNL_ARG_SHIFT] = WrapTensor(PlainDesc({channels_}), bias);
    }
  }

  // Calls f(c, i) for every element i of x, c its channel.
  template <typename F>
  void ForEach(F&& f) const {
    const int64_t n = outputs_[0].shape[0];
    const int64_t s = channels_ == 0 || n == 0 ? 0 : per_channel_ / n;
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t c = 0; c < channels_; ++c) {
        for (int64_t k = 0; k < s; ++k) f(c, (b * channels_ + c) * s + k);
      }
    }
  }

  template <typename T>
  void BatchStatistics(const Tensor& x, Tensor& mean, Tensor& var) const {
    const T* xp = x.data<T>();
    T* m = mean.data<T>();
    T* v = var.data<T>();
    std::fill(m, m + channels_, T(0));
    std::fill(v, v + channels_, T(0));
    ForEach([&](int64_t c, int64_t i) { m[c] += xp[i]; });
    for (int64_t c = 0; c < channels_; ++c)
      m[c] /= static_cast<T>(per_channel_);
    ForEach(
        [&](int64_t c, int64_t i) { v[c] += (xp[i] - m[c]) * (xp[i] - m[c]); });
    for (int64_t c = 0; c < channels_; ++c)
      v[c] /= static_cast<T>(per_channel_);
  }

  template <typename T>
  void Normalize(const Tensor& x, const Tensor& mean, const Tensor& var,
                 const Tensor& weight, const Tensor& bias, Tensor& y) const {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T* m = mean.data<T>();
    const T* v = var.data<T>();
    ForEach([&](int64_t c, int64_t i) {
      const T w = has_weight_ ? weight.data<T>()[c] : T(1);
      const T b = has_bias_ ? bias.data<T>()[c] : T(0);
      yp[i] =
          (xp[i] - m[c]) / std::sqrt(v[c] + static_cast<T>(epsilon_)) * w + b;
    });
  }

  // grads[i] (defined where wanted, zeroed) for every input i.
  template <typename T>
  void BackwardLoop(const Tensor& x, const Tensor& dy, const Tensor& mean,
                    const Tensor& var, const Tensor& weight,
                    std::vector<Tensor>& grads) const {
    // No elements: every gradient stays zero, and needs no per-channel sums.
    if (x.num_elements() == 0) return;
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    // The sums run over a channel's N·H·W elements: in double, also for
    // float32 (where oneDNN's blocked sums would otherwise serve).
    std::vector<T> invstd(channels_);
    std::vector<double> sum_dy(channels_, 0), sum_dy_xhat(channels_, 0);
    for (int64_t c = 0; c < channels_; ++c) {
      invstd[c] = 1 / std::sqrt(var.data<T>()[c] + static_cast<T>(epsilon_));
    }
    auto xhat = [&](int64_t c, int64_t i) {
      return (xp[i] - mean.data<T>()[c]) * invstd[c];
    };
    ForEach([&](int64_t c, int64_t i) {
      sum_dy[c] += gp[i];
      sum_dy_xhat[c] += gp[i] * xhat(c, i);
    });
    auto w = [&](int64_t c) {
      return has_weight_ ? weight.data<T>()[c] : T(1);
    };
    if (grads[kX].defined()) {
      T* dx = grads[kX].data<T>();
      const T n = static_cast<T>(per_channel_);
      ForEach([&](int64_t c, int64_t i) {
        dx[i] = train_ ? w(c) * invstd[c] / n *
                             (n * gp[i] - static_cast<T>(sum_dy[c]) -
                              xhat(c, i) * static_cast<T>(sum_dy_xhat[c]))
                       : w(c) * invstd[c] * gp[i];
      });
    }
    for (int64_t c = 0; c < channels_; ++c) {
      const T sdy = static_cast<T>(sum_dy[c]);
      const T sdy_xhat = static_cast<T>(sum_dy_xhat[c]);
      if (grads[kWeight].defined()) grads[kWeight].data<T>()[c] = sdy_xhat;
      if (grads[kBias].defined()) grads[kBias].data<T>()[c] = sdy;
      // EVAL: y = (x - rm)·w/√(rv + eps) + b.
      if (grads[kMean].defined())
        grads[kMean].data<T>()[c] = -w(c) * invstd[c] * sdy;
      if (grads[kVar].defined()) {
        grads[kVar].data<T>()[c] =
            T(-0.5) * w(c) * sdy_xhat * invstd[c] * invstd[c];
      }
    }
  }

  double epsilon_ = 1e-5, momentum_ = 0.1;
  bool train_ = true, empty_ = false, has_weight_ = false, has_bias_ = false;
  bool needs_running_grads_ = false;
  int64_t channels_ = 0, per_channel_ = 0;
  std::optional<DnnlPrimitive> forward_, backward_;
  memory::desc data_;
  std::shared_ptr<const Layout> layout_;
};

OpSchema BatchNormSchema() {
  OpSchema s;
  s.name = "BatchNorm";
  s.description =
      "normalises each channel of x [N, C, ...]: batch statistics in TRAIN "
      "(running ones updated and returned as buffers), running ones in EVAL";
  s.inputs = {{"x"},
              {"weight", /*optional=*/true},
              {"bias", /*optional=*/true},
              {"running_mean"},
              {"running_var"}};
  s.attrs = {
      {"epsilon", AttrType::kFloat, AttrValue(1e-5), "added to the variance"},
      {"momentum", AttrType::kFloat, AttrValue(0.1),
       "weight of the batch statistics in the running ones"}};
  s.create = BatchNormOp::Create;
  return s;
}

REGISTER_OP(BatchNormSchema());

}  // namespace
}  // namespace gradserve
