// GroupNorm(x, weight?, bias?) and InstanceNorm1d/2d(x, weight?, bias?,
// running_mean?, running_var?), as torch 1.13's group_norm and
// instance_norm: x [N, C, ...] seen as N·G rows of C/G channels' elements
// (instance norm: G = C), each normalised by its own mean and biased
// variance, then scaled by weight [C] and shifted by bias [C] per channel.
//
// InstanceNorm follows torch.nn.InstanceNorm's track_running_stats: with
// running statistics given, TRAIN normalises by the rows' statistics and
// updates the running ones as torch does (the mean over the batch of each
// sample's BatchNorm-style update, unbiased variance), and EVAL normalises
// by the running ones; without them both modes use the rows' statistics.
// InstanceNorm1d takes [N, C, L] or [C, L], InstanceNorm2d [N, C, H, W] or
// [C, H, W]. Plain loops with double sums (oneDNN 2.6 has no group
// normalization).
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/ops/unbatched.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

enum Input { kX = 0, kWeight = 1, kBias = 2, kMean = 3, kVar = 4 };

class GroupNormOp : public Op {
 public:
  // `instance`: InstanceNorm (one group per channel, running statistics).
  static absl::StatusOr<std::unique_ptr<Op>> Create(const OpConfig& c,
                                                    bool instance) {
    RETURN_IF_ERROR(c.ExpectFloat(kX));
    const Shape& x = c.shape(kX);
    if (x.size() < 2) {
      return c.Error(c.Describe(kX), " must be [N, C, ...], got ",
                     ShapeToString(x));
    }
    auto op = std::make_unique<GroupNormOp>();
    op->n_ = x[0];
    op->c_ = x[1];
    op->s_ = ElementCount(absl::MakeConstSpan(x).subspan(2));
    op->groups_ = instance ? x[1] : c.attrs().GetInt("num_groups");
    if (!instance && (op->groups_ < 1 || x[1] % op->groups_ != 0)) {
      return c.attrs().Invalid("num_groups",
                               absl::StrCat(">= 1 and dividing the ", x[1],
                                            " channels of ", c.Describe(kX)));
    }
    for (int i = kWeight; i < c.num_inputs(); ++i) {
      if (!c.has_input(i)) continue;
      RETURN_IF_ERROR(c.ExpectFloat(i));
      RETURN_IF_ERROR(c.ExpectShape(i, {x[1]}));
    }
    op->epsilon_ = c.attrs().GetFloat("epsilon");
    op->has_weight_ = c.has_input(kWeight);
    op->has_bias_ = c.has_input(kBias);
    if (instance) RETURN_IF_ERROR(op->ReadRunningStats(c));
    op->outputs_ = {c.input(kX)};
    return std::unique_ptr<Op>(std::move(op));
  }

  int64_t ForwardFlops() const override {
    return MulSat(outputs_[0].num_elements(), 8);
  }

  // Per row: the mean and 1/std Forward keeps (and the variance for a
  // running update); per channel: Backward's two double sums. An empty x
  // needs none.
  int64_t ExtraBytes() const override {
    if (outputs_[0].num_elements() == 0) return 0;
    const int64_t dsize = static_cast<int64_t>(DTypeSize(outputs_[0].dtype));
    const int64_t rows = MulSat(n_, groups_);
    const int64_t stats = MulSat(rows, dsize * (updates_ ? 3 : 2));
    const int64_t updated = updates_ ? MulSat(c_, 2 * dsize) : 0;
    return CheckedAdd(CheckedAdd(stats, updated).value_or(kMaxBytes),
                      MulSat(c_, 2 * 8))
        .value_or(kMaxBytes);
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    SavedValues s{{kX}, {}};
    if (has_weight_) s.inputs.push_back(kWeight);
    return s;
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    const Tensor& x = ctx.input(kX);
    const DType dtype = x.dtype();
    if (x.num_elements() == 0 && !updates_) {
      // Nothing to normalise and no statistics to keep (Backward of an empty
      // x reads none): [N, C, 0] must not allocate N·groups of them.
      ctx.AllocateOutput(0);
      return absl::OkStatus();
    }
    const int64_t rows = n_ * groups_;
    Tensor mean = Tensor::Empty(dtype, {rows});
    Tensor rstd = Tensor::Empty(dtype, {rows});
    Tensor var = updates_ ? Tensor::Empty(dtype, {rows}) : Tensor();
    Tensor& y = ctx.AllocateOutput(0);
    DispatchFloat(dtype, [&](auto zero) {
      using T = decltype(zero);
      if (running_) {
        RunningStatistics<T>(ctx.input(kMean), ctx.input(kVar), mean, rstd);
      } else {
        RowStatistics<T>(x, mean, rstd, var);
      }
      Normalize<T>(x, mean, rstd, ctx.input(kWeight), ctx.input(kBias), y);
      if (updates_) UpdateRunningStats<T>(ctx, mean, var);
    });
    if (ctx.backward_will_run()) {
      ctx.Save(std::move(mean));
      ctx.Save(std::move(rstd));
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    const DType dtype = outputs_[0].dtype;
    std::vector<Tensor> grads(ctx.num_inputs());
    for (int i = 0; i < ctx.num_inputs(); ++i) {
      // Running statistics get a gradient only when they normalise.
      if (ctx.needs_grad(i) && (i <= kBias || running_)) {
        grads[i] =
            Tensor::Zeros(dtype, i == kX ? outputs_[0].shape : Shape{c_});
      }
    }
    if (outputs_[0].num_elements() > 0 && ctx.has_grad_output(0)) {
      DispatchFloat(
          dtype, [&](auto zero) { BackwardLoop<decltype(zero)>(ctx, grads); });
    }
    for (int i = 0; i < ctx.num_inputs(); ++i) {
      if (grads[i].defined()) ctx.SetGradInput(i, std::move(grads[i]));
    }
    return absl::OkStatus();
  }

 private:
  static constexpr int64_t kMaxBytes = std::numeric_limits<int64_t>::max();

  // Which statistics normalise, and whether the running ones are updated.
  absl::Status ReadRunningStats(const OpConfig& c) {
    momentum_ = c.attrs().GetFloat("momentum");
    const bool mean = c.has_input(kMean), var = c.has_input(kVar);
    const bool train = c.mode() == Mode::kTrain;
    running_ = !train && (mean || var);
    if (running_ && !(mean && var)) {
      return c.Error(c.Describe(mean ? kVar : kMean), " must be given with ",
                     c.Describe(mean ? kMean : kVar),
                     " in EVAL, as torch's instance_norm without input "
                     "statistics needs both");
    }
    // torch overwrites them with the batch mean of per-sample copies: NaN
    // for an empty batch, in EVAL too.
    update_mean_ = (train || n_ == 0) && mean;
    update_var_ = (train || n_ == 0) && var;
    updates_ = update_mean_ || update_var_;
    if (!running_ && s_ <= 1 && n_ * c_ > 0) {
      return c.Error(
          "expected more than 1 spatial element when using the "
          "input's statistics, got ",
          c.Describe(kX), " ", ShapeToString(c.shape(kX)));
    }
    return absl::OkStatus();
  }

  // InstanceNorm of no channels has no groups (and no rows).
  int64_t RowSize() const { return groups_ == 0 ? 0 : c_ / groups_ * s_; }
  int64_t Channel(int64_t i) const {
    return s_ == 0 || c_ == 0 ? 0 : i / s_ % c_;
  }

  // Each row's mean and 1/sqrt(biased variance + epsilon), two passes in
  // double; the variance too when `var` is defined.
  template <typename T>
  void RowStatistics(const Tensor& x, Tensor& mean, Tensor& rstd,
                     Tensor& var) const {
    const T* xp = x.data<T>();
    const int64_t m = RowSize();
    for (int64_t r = 0; r < n_ * groups_; ++r) {
      const T* row = xp + r * m;
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < m; ++i) sum += row[i];
      const double mu = sum / static_cast<double>(m);
      for (int64_t i = 0; i < m; ++i) sq += (row[i] - mu) * (row[i] - mu);
      const double v = sq / static_cast<double>(m);
      mean.data<T>()[r] = static_cast<T>(mu);
      rstd.data<T>()[r] = static_cast<T>(1 / std::sqrt(v + epsilon_));
      if (var.defined()) var.data<T>()[r] = static_cast<T>(v);
    }
  }

  // EVAL with running statistics: row (n, c) takes channel c's.
  template <typename T>
  void RunningStatistics(const Tensor& rm, const Tensor& rv, Tensor& mean,
                         Tensor& rstd) const {
    for (int64_t r = 0; r < n_ * c_; ++r) {
      mean.data<T>()[r] = rm.data<T>()[r % c_];
      rstd.data<T>()[r] = static_cast<T>(
          1 / std::sqrt(static_cast<double>(rv.data<T>()[r % c_]) + epsilon_));
    }
  }

  template <typename T>
  void Normalize(const Tensor& x, const Tensor& mean, const Tensor& rstd,
                 const Tensor& weight, const Tensor& bias, Tensor& y) const {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const int64_t m = RowSize();
    for (int64_t i = 0; i < y.num_elements(); ++i) {
      const int64_t r = i / m, ch = Channel(i);
      T v = (xp[i] - mean.data<T>()[r]) * rstd.data<T>()[r];
      if (has_weight_) v *= weight.data<T>()[ch];
      if (has_bias_) v += bias.data<T>()[ch];
      yp[i] = v;
    }
  }

  // torch: each sample's (1 − m)·running + m·statistic (the variance
  // unbiased), averaged over the batch (0/0 = NaN for an empty one).
  template <typename T>
  void UpdateRunningStats(ForwardContext& ctx, const Tensor& mean,
                          const Tensor& var) const {
    const double m = momentum_;
    const double unbias = static_cast<double>(s_) / static_cast<double>(s_ - 1);
    for (int i : {kMean, kVar}) {
      if (!(i == kMean ? update_mean_ : update_var_)) continue;
      const T* old = ctx.input(i).data<T>();
      const T* stat = (i == kMean ? mean : var).data<T>();
      Tensor updated = Tensor::Empty(mean.dtype(), {c_});
      for (int64_t ch = 0; ch < c_; ++ch) {
        double sum = 0;
        for (int64_t n = 0; n < n_; ++n) {
          const double v = stat[n * c_ + ch] * (i == kVar ? unbias : 1.0);
          sum += static_cast<T>((1 - m) * old[ch] + m * v);
        }
        updated.data<T>()[ch] = static_cast<T>(sum / static_cast<double>(n_));
      }
      ctx.UpdateState(i, std::move(updated));
    }
  }

  // dx, dweight, dbias and (EVAL with running statistics) drunning_mean,
  // drunning_var into the zeroed grads that are wanted.
  template <typename T>
  void BackwardLoop(BackwardContext& ctx, std::vector<Tensor>& grads) const {
    const T* xp = ctx.input(kX).template data<T>();
    const T* dy = ctx.grad_output(0).template data<T>();
    const T* w = has_weight_ ? ctx.input(kWeight).template data<T>() : nullptr;
    const T* mean = ctx.saved()[0].template data<T>();
    const T* rstd = ctx.saved()[1].template data<T>();
    auto out = [&](int i) {
      return grads[i].defined() ? grads[i].template data<T>() : nullptr;
    };
    T *dx = out(kX), *dw = out(kWeight), *db = out(kBias);
    T* dmean = running_ ? out(kMean) : nullptr;
    T* dvar = running_ ? out(kVar) : nullptr;
    std::vector<double> sum_w(dw ? c_ : 0), sum_b(db ? c_ : 0);
    const int64_t m = RowSize();
    for (int64_t r = 0; r < n_ * groups_; ++r) {
      double g = 0, gx = 0;  // Σ dy·w and Σ dy·w·x̂ over the row
      for (int64_t i = r * m; i < (r + 1) * m; ++i) {
        const int64_t ch = Channel(i);
        const double xhat = (xp[i] - mean[r]) * rstd[r];
        const double gi = dy[i] * (w ? w[ch] : T(1));
        g += gi;
        gx += gi * xhat;
        if (dw) sum_w[ch] += dy[i] * xhat;
        if (db) sum_b[ch] += dy[i];
        if (dmean) dmean[ch] -= static_cast<T>(gi * rstd[r]);
        if (dvar) {
          dvar[ch] += static_cast<T>(gi * (xp[i] - mean[r]) * -0.5 * rstd[r] *
                                     rstd[r] * rstd[r]);
        }
      }
      if (!dx) continue;
      const double md = static_cast<double>(m);
      for (int64_t i = r * m; i < (r + 1) * m; ++i) {
        const double gi = dy[i] * (w ? w[Channel(i)] : T(1));
        if (running_) {
          dx[i] = static_cast<T>(gi * rstd[r]);
          continue;
        }
        const double xhat = (xp[i] - mean[r]) * rstd[r];
        dx[i] = static_cast<T>(rstd[r] * (gi - g / md - xhat * gx / md));
      }
    }
    for (int64_t ch = 0; dw && ch < c_; ++ch)
      dw[ch] = static_cast<T>(sum_w[ch]);
    for (int64_t ch = 0; db && ch < c_; ++ch)
      db[ch] = static_cast<T>(sum_b[ch]);
  }

  int64_t n_ = 0, c_ = 0, s_ = 1, groups_ = 1;
  double epsilon_ = 1e-5, momentum_ = 0.1;
  bool has_weight_ = false, has_bias_ = false;
  bool running_ = false;  // EVAL with running statistics: they normalise
  bool update_mean_ = false, update_var_ = false, updates_ = false;
};

OpSchema GroupNormSchema() {
  OpSchema s;
  s.name = "GroupNorm";
  s.description =
      "normalises x [N, C, ...] over each of num_groups groups of C/groups "
      "channels per sample, then weight [C] and bias [C] per channel";
  s.inputs = {
      {"x"}, {"weight", /*optional=*/true}, {"bias", /*optional=*/true}};
  s.attrs = {
      {"num_groups", AttrType::kInt, std::nullopt,
       "groups the channels are split into; divides C"},
      {"epsilon", AttrType::kFloat, AttrValue(1e-5), "added to the variance"}};
  s.create = [](const OpConfig& c) { return GroupNormOp::Create(c, false); };
  return s;
}

OpSchema InstanceNormSchema(int spatial) {
  OpSchema s;
  s.name = spatial == 1 ? "InstanceNorm1d" : "InstanceNorm2d";
  s.description = absl::StrCat(
      "normalises each channel of each sample of x ",
      spatial == 1 ? "[N, C, L] (or [C, L])" : "[N, C, H, W] (or [C, H, W])",
      ", then weight [C] and bias [C]; with running statistics, TRAIN "
      "updates them and EVAL normalises by them (track_running_stats)");
  s.inputs = {{"x"},
              {"weight", /*optional=*/true},
              {"bias", /*optional=*/true},
              {"running_mean", /*optional=*/true},
              {"running_var", /*optional=*/true}};
  s.attrs = {
      {"epsilon", AttrType::kFloat, AttrValue(1e-5), "added to the variance"},
      {"momentum", AttrType::kFloat, AttrValue(0.1),
       "weight of the statistics in the running ones"}};
  s.create = [spatial](const OpConfig& c) {
    return CreateMaybeUnbatched(
        c, spatial + 2, {0},
        [spatial](const OpConfig& b) -> absl::StatusOr<std::unique_ptr<Op>> {
          RETURN_IF_ERROR(b.ExpectRank(kX, spatial + 2));
          return GroupNormOp::Create(b, true);
        });
  };
  return s;
}

REGISTER_OP(GroupNormSchema());
REGISTER_OP(InstanceNormSchema(1));
REGISTER_OP(InstanceNormSchema(2));

}  // namespace
}  // namespace gradserve
