// KLDivLoss(input, target): pointwise terms of the Kullback-Leibler
// divergence of log-probabilities `input` from `target`, as torch 1.13's
// composite kl_div computes them:
//   log_target = 0: xlogy(t, t) − t·x  (0 where t = 0; NaN for t < 0);
//   log_target = 1: exp(t)·(t − x).
// Gradients are autograd's of those formulas: dx = −t or −exp(t); dt =
// xlogy(t ≠ 0, t) + t/t − x (NaN at t = 0, as in torch) or
// exp(t)·(t − x + 1). reduction "batchmean" is the sum over the first dim
// (the sum for a 0-d input), "mean" the mean over all elements.
#include <cmath>

#include "core/op_registry.h"
#include "core/ops/loss_util.h"

namespace gradserve {
namespace {

// torch's xlogy(x, y): NaN for NaN y, 0 for x = 0, else x·log(y).
template <typename T>
T Xlogy(T x, T y) {
  if (std::isnan(y)) return y;
  if (x == T(0)) return T(0);
  return x * std::log(y);
}

struct KullbackLeibler : PointwiseLossFormula {
  static constexpr int64_t kFlopsPerElement = 5;
  static constexpr bool kFirstInputIsProbability = false;
  static constexpr bool kTargetGradReadsTarget = true;
  static constexpr bool kBatchMean = true;

  absl::Status Init(const OpConfig& c) {
    const int64_t v = c.attrs().GetInt("log_target");
    if (v != 0 && v != 1) return c.attrs().Invalid("log_target", "0 or 1");
    log_target = v == 1;
    return absl::OkStatus();
  }

  template <typename T>
  T Loss(T x, T t) const {
    if (log_target) return std::exp(t) * (t - x);
    return Xlogy(t, t) - t * x;
  }
  template <typename T>
  T GradA(T, T t) const {
    return log_target ? -std::exp(t) : -t;
  }
  template <typename T>
  T GradB(T x, T t) const {
    if (log_target) return std::exp(t) * (t - x + T(1));
    return Xlogy(static_cast<T>(t != T(0)), t) + t / t - x;
  }

  bool log_target = false;
};

OpSchema KLDivLossSchema() {
  OpSchema s =
      LossSchema("KLDivLoss",
                 "reduction of target·(log target − input) (log_target 0) or "
                 "exp(target)·(target − input) (log_target 1); input "
                 "(log-probabilities) and target of one shape",
                 "input", PointwiseLossOp<KullbackLeibler>::Create, {},
                 {{"log_target", AttrType::kInt, AttrValue(int64_t{0}),
                   "1: the target holds log-probabilities"}});
  s.attrs[0].description =
      "\"mean\" (over all elements), \"batchmean\" (the sum over the first "
      "dim, torch's KL divergence), \"sum\" or \"none\"";
  return s;
}

REGISTER_OP(KLDivLossSchema());

}  // namespace
}  // namespace gradserve
