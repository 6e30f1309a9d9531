#include "core/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

// The kernels repeat, element by element, the float32 arithmetic of torch
// 1.13's CPU kernels under their default (AVX2) dispatch. There every
// `a + alpha * b` within one torch op (add with alpha, addcmul, the norm's
// sum of squares) is a single fused multiply-add, so it is std::fma here;
// this file is compiled with -ffp-contract=off so that nothing else fuses.
// Scalar hyper-parameters are doubles, rounded to float where torch rounds
// them.
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__)
// A clone with hardware FMA and AVX vectors for the CPUs that have them; in
// the default clone std::fma is a libm call. Both give the same bits.
#define GS_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define GS_FMA_CLONES
#endif

namespace gradserve {
namespace {

constexpr absl::string_view kMomentumBuffer = "momentum_buffer";
constexpr absl::string_view kExpAvg = "exp_avg";
constexpr absl::string_view kExpAvgSq = "exp_avg_sq";
constexpr absl::string_view kMaxExpAvgSq = "max_exp_avg_sq";

// ---- Configuration ---------------------------------------------------------

// A hyper-parameter's allowed range: finite and > 0, >= 0, or in [0, 1).
struct FieldRange {
  const char* field;
  double value;
  bool zero_allowed = true;
  bool below_one = false;
};

absl::Status CheckRange(absl::string_view optimizer, const FieldRange& f) {
  const bool ok = std::isfinite(f.value) &&
                  (f.zero_allowed ? f.value >= 0 : f.value > 0) &&
                  (!f.below_one || f.value < 1);
  if (ok) return absl::OkStatus();
  const char* rule = f.below_one      ? "in [0, 1)"
                     : f.zero_allowed ? "finite and >= 0"
                                      : "finite and > 0";
  return absl::InvalidArgumentError(
      absl::StrCat(optimizer, optimizer.empty() ? "" : " ", f.field,
                   " must be ", rule, ", got ", f.value));
}

absl::Status CheckRanges(absl::string_view optimizer,
                         const std::vector<FieldRange>& fields) {
  for (const FieldRange& f : fields) RETURN_IF_ERROR(CheckRange(optimizer, f));
  return absl::OkStatus();
}

absl::Status ValidateSgd(const SgdConfig& c) {
  RETURN_IF_ERROR(CheckRanges("SGD", {{"lr", c.lr, /*zero_allowed=*/false},
                                      {"momentum", c.momentum},
                                      {"dampening", c.dampening},
                                      {"weight_decay", c.weight_decay}}));
  if (c.nesterov && (c.momentum <= 0 || c.dampening != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD nesterov needs momentum > 0 and dampening 0, got "
                     "momentum ",
                     c.momentum, " and dampening ", c.dampening));
  }
  return absl::OkStatus();
}

absl::string_view AdamName(const AdamConfig& c) {
  return c.decoupled_weight_decay ? "AdamW" : "Adam";
}

absl::Status ValidateAdam(const AdamConfig& c) {
  return CheckRanges(AdamName(c), {{"lr", c.lr},
                                   {"beta1", c.beta1, true, /*below_one=*/true},
                                   {"beta2", c.beta2, true, /*below_one=*/true},
                                   {"eps", c.eps},
                                   {"weight_decay", c.weight_decay}});
}

absl::string_view OptimizerName(const OptimizerConfig& config) {
  if (const auto* adam = std::get_if<AdamConfig>(&config.kind)) {
    return AdamName(*adam);
  }
  return std::get<SgdConfig>(config.kind).momentum != 0
             ? "SGD with momentum"
             : "SGD without momentum";
}

// ---- Inputs ----------------------------------------------------------------

absl::Status CheckFloat32(absl::string_view what, const Tensor& t) {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no value"));
  }
  if (t.dtype() != DType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be float32, got ", DTypeName(t.dtype())));
  }
  if (!t.is_plain()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a plain row-major tensor"));
  }
  return absl::OkStatus();
}

absl::Status CheckGradient(const std::string& name, const Tensor& param,
                           const std::map<std::string, Tensor>& gradients) {
  auto it = gradients.find(name);
  if (it == gradients.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no gradient for parameter '", name, "'"));
  }
  RETURN_IF_ERROR(
      CheckFloat32(absl::StrCat("gradient '", name, "'"), it->second));
  if (it->second.shape() != param.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gradient '", name, "' has shape ", ShapeToString(it->second.shape()),
        ", parameter '", name, "' has ", ShapeToString(param.shape())));
  }
  return absl::OkStatus();
}

absl::Status CheckScalars(const StepInput& input) {
  if (input.step < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be >= 1, got ", input.step));
  }
  return CheckRange("", {"learning_rate", input.learning_rate});
}

absl::Status ValidateStepInput(const OptimizerConfig& config,
                               const StepInput& input) {
  if (input.parameters == nullptr || input.gradients == nullptr) {
    return absl::InvalidArgumentError("a step needs parameters and gradients");
  }
  RETURN_IF_ERROR(CheckScalars(input));
  std::map<std::string, TensorMeta> metas;
  for (const auto& [name, param] : *input.parameters) {
    RETURN_IF_ERROR(
        CheckFloat32(absl::StrCat("parameter '", name, "'"), param));
    RETURN_IF_ERROR(CheckGradient(name, param, *input.gradients));
    metas.emplace(name, param.meta());
  }
  for (const auto& [name, grad] : *input.gradients) {
    if (metas.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradient '", name, "' is for no trained parameter"));
    }
  }
  if (input.state == nullptr) return absl::OkStatus();
  return ValidateOptimizerState(config, metas, *input.state);
}

// ---- Kernels ---------------------------------------------------------------

// torch.norm(x, 2) of a contiguous float32 tensor: eight lanes of fused
// squares, the lanes summed in order, the tail fused onto that sum.
constexpr int kLanes = 8;

GS_FMA_CLONES float TorchNorm2(const float* x, int64_t n) {
  float lanes[kLanes] = {};
  const int64_t body = n - n % kLanes;
  for (int64_t i = 0; i < body; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      lanes[j] = std::fma(x[i + j], x[i + j], lanes[j]);
    }
  }
  float sum = lanes[0];
  for (int j = 1; j < kLanes; ++j) sum += lanes[j];
  for (int64_t i = body; i < n; ++i) sum = std::fma(x[i], x[i], sum);
  return std::sqrt(sum);
}

// clip_grad_norm_'s clamped coefficient: `max_norm / (total_norm + 1e-6)` is
// Tensor.__rtruediv__, reciprocal() * max_norm, in float32; clamp(max=1)
// keeps a NaN.
float ClipCoefficient(float total_norm, double max_norm) {
  const float coef = (1.0f / (total_norm + static_cast<float>(1e-6))) *
                     static_cast<float>(max_norm);
  return coef > 1.0f ? 1.0f : coef;
}

// torch's _single_tensor_sgd for one parameter.
struct SgdScalars {
  float grad_scale;  // the clipping coefficient, or 1
  bool has_weight_decay;
  float weight_decay;
  bool has_momentum;
  float momentum;
  float dampening_complement;  // 1 - dampening
  bool nesterov;
  float neg_lr;
};

// buf_in null: the first step, whose buffer is the gradient.
GS_FMA_CLONES void SgdKernel(const SgdScalars s, int64_t n, const float* param,
                             const float* grad, const float* buf_in,
                             float* buf_out, float* param_out) {
  for (int64_t i = 0; i < n; ++i) {
    float d = grad[i] * s.grad_scale;
    if (s.has_weight_decay) d = std::fma(param[i], s.weight_decay, d);
    if (s.has_momentum) {
      const float buf = buf_in == nullptr ? d
                                          : std::fma(d, s.dampening_complement,
                                                     buf_in[i] * s.momentum);
      buf_out[i] = buf;
      d = s.nesterov ? std::fma(buf, s.momentum, d) : buf;
    }
    param_out[i] = std::fma(d, s.neg_lr, param[i]);
  }
}

// torch's _single_tensor_adam and _single_tensor_adamw for one parameter.
struct AdamScalars {
  float grad_scale;
  float param_scale;      // AdamW: 1 - lr * weight_decay; Adam: 1
  bool has_weight_decay;  // Adam's L2 term
  float weight_decay;
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  bool amsgrad;
  float bias_correction2_sqrt, eps, neg_step_size;
};

template <typename T>
struct Moments {
  T* exp_avg;
  T* exp_avg_sq;
  T* max_exp_avg_sq;  // amsgrad only
};

// torch.maximum: NaN when either is.
inline float Maximum(float a, float b) { return (a < b || b != b) ? b : a; }

// The tensors never overlap: __restrict lets the loop vectorize without
// run-time alias checks.
template <bool kAmsgrad>
inline void AdamLoop(const AdamScalars& s, int64_t n,
                     const float* __restrict param,
                     const float* __restrict grad, Moments<const float> in,
                     Moments<float> out, float* __restrict param_out) {
  const float* __restrict m_in = in.exp_avg;
  const float* __restrict v_in = in.exp_avg_sq;
  const float* __restrict v_max_in = in.max_exp_avg_sq;
  float* __restrict m_out = out.exp_avg;
  float* __restrict v_out = out.exp_avg_sq;
  float* __restrict v_max_out = out.max_exp_avg_sq;
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] * s.grad_scale;
    const float p = param[i] * s.param_scale;
    if (s.has_weight_decay) g = std::fma(param[i], s.weight_decay, g);
    const float m = std::fma(g, s.one_minus_beta1, m_in[i] * s.beta1);
    const float v = std::fma(s.one_minus_beta2 * g, g, v_in[i] * s.beta2);
    m_out[i] = m;
    v_out[i] = v;
    float v_max = v;
    if constexpr (kAmsgrad) {
      v_max = Maximum(v_max_in[i], v);
      v_max_out[i] = v_max;
    }
    const float denom = std::sqrt(v_max) / s.bias_correction2_sqrt + s.eps;
    param_out[i] = p + (s.neg_step_size * m) / denom;
  }
}

GS_FMA_CLONES void AdamKernel(const AdamScalars s, int64_t n,
                              const float* param, const float* grad,
                              Moments<const float> in, Moments<float> out,
                              float* param_out) {
  if (s.amsgrad) {
    AdamLoop<true>(s, n, param, grad, in, out, param_out);
  } else {
    AdamLoop<false>(s, n, param, grad, in, out, param_out);
  }
}

// ---- Steps -----------------------------------------------------------------

// One parameter's update: its inputs, and where the new tensors go.
struct ParamStep {
  const std::string& name;
  const Tensor& param;
  const Tensor& grad;
  const OptimizerState& state;
  StepResult& result;

  const Tensor* OldState(absl::string_view state_name) const {
    auto it = state.find(absl::StrCat(name, "/", state_name));
    return it == state.end() ? nullptr : &it->second;
  }
  // The old tensor, or zeros where torch would start from them.
  Tensor OldStateOrZeros(absl::string_view state_name) const {
    const Tensor* t = OldState(state_name);
    return t != nullptr ? *t : Tensor::Zeros(DType::kFloat32, param.shape());
  }
  float* NewState(absl::string_view state_name) const {
    Tensor& t = result.state[absl::StrCat(name, "/", state_name)];
    t = Tensor::Empty(DType::kFloat32, param.shape());
    return t.data<float>();
  }
  float* NewParam() const {
    Tensor& t = result.parameters[name];
    t = Tensor::Empty(DType::kFloat32, param.shape());
    return t.data<float>();
  }
};

SgdScalars MakeSgdScalars(const SgdConfig& c, double lr, float grad_scale) {
  SgdScalars s;
  s.grad_scale = grad_scale;
  s.has_weight_decay = c.weight_decay != 0;
  s.weight_decay = static_cast<float>(c.weight_decay);
  s.has_momentum = c.momentum != 0;
  s.momentum = static_cast<float>(c.momentum);
  s.dampening_complement = static_cast<float>(1 - c.dampening);
  s.nesterov = c.nesterov;
  s.neg_lr = static_cast<float>(-lr);
  return s;
}

void SgdStep(const SgdScalars& s, const ParamStep& p) {
  const float* buf_in = nullptr;
  float* buf_out = nullptr;
  if (s.has_momentum) {
    const Tensor* old = p.OldState(kMomentumBuffer);
    if (old != nullptr) buf_in = old->data<float>();
    buf_out = p.NewState(kMomentumBuffer);
  }
  SgdKernel(s, p.param.num_elements(), p.param.data<float>(),
            p.grad.data<float>(), buf_in, buf_out, p.NewParam());
}

AdamScalars MakeAdamScalars(const AdamConfig& c, double lr, int64_t step,
                            float grad_scale) {
  // As torch: Python floats, rounded to float32 where the tensor ops take
  // them.
  const double bias_correction1 = 1 - std::pow(c.beta1, step);
  const double bias_correction2 = 1 - std::pow(c.beta2, step);
  const double step_size = lr / bias_correction1;
  AdamScalars s;
  s.grad_scale = grad_scale;
  s.param_scale = c.decoupled_weight_decay
                      ? static_cast<float>(1 - lr * c.weight_decay)
                      : 1.0f;
  s.has_weight_decay = !c.decoupled_weight_decay && c.weight_decay != 0;
  s.weight_decay = static_cast<float>(c.weight_decay);
  s.beta1 = static_cast<float>(c.beta1);
  s.one_minus_beta1 = static_cast<float>(1 - c.beta1);
  s.beta2 = static_cast<float>(c.beta2);
  s.one_minus_beta2 = static_cast<float>(1 - c.beta2);
  s.amsgrad = c.amsgrad;
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.eps = static_cast<float>(c.eps);
  s.neg_step_size = static_cast<float>(-step_size);
  return s;
}

void AdamStep(const AdamScalars& s, const ParamStep& p) {
  const Tensor exp_avg = p.OldStateOrZeros(kExpAvg);
  const Tensor exp_avg_sq = p.OldStateOrZeros(kExpAvgSq);
  Tensor max_exp_avg_sq;
  Moments<const float> in{exp_avg.data<float>(), exp_avg_sq.data<float>(),
                          nullptr};
  Moments<float> out{p.NewState(kExpAvg), p.NewState(kExpAvgSq), nullptr};
  if (s.amsgrad) {
    max_exp_avg_sq = p.OldStateOrZeros(kMaxExpAvgSq);
    in.max_exp_avg_sq = max_exp_avg_sq.data<float>();
    out.max_exp_avg_sq = p.NewState(kMaxExpAvgSq);
  }
  AdamKernel(s, p.param.num_elements(), p.param.data<float>(),
             p.grad.data<float>(), in, out, p.NewParam());
}

// clip_grad_norm_'s total_norm over the gradients in name order.
float TotalGradNorm(const std::map<std::string, Tensor>& gradients) {
  std::vector<float> norms;
  norms.reserve(gradients.size());
  for (const auto& [name, grad] : gradients) {
    norms.push_back(TorchNorm2(grad.data<float>(), grad.num_elements()));
  }
  return TorchNorm2(norms.data(), static_cast<int64_t>(norms.size()));
}

// The state key's parameter and state name, split at the last '/'.
std::pair<absl::string_view, absl::string_view> SplitStateKey(
    absl::string_view key) {
  const size_t slash = key.rfind('/');
  if (slash == absl::string_view::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

absl::Status CheckStateKey(
    const OptimizerConfig& config, const std::vector<std::string>& names,
    absl::string_view key,
    const std::map<std::string, TensorMeta>& parameters) {
  const auto [param, state_name] = SplitStateKey(key);
  const std::string what = absl::StrCat("optimizer state '", key, "'");
  if (names.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", OptimizerName(config), " keeps no state"));
  }
  if (param.empty() ||
      std::find(names.begin(), names.end(), state_name) == names.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": expected '<parameter>/<state>' with <state> one of ",
        absl::StrJoin(names, ", "), " (", OptimizerName(config), ")"));
  }
  if (parameters.count(std::string(param)) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", param, "' is not a trained parameter"));
  }
  return absl::OkStatus();
}

absl::Status CheckStateTensor(absl::string_view key, const TensorMeta& param,
                              const Tensor& t) {
  const std::string what = absl::StrCat("optimizer state '", key, "'");
  RETURN_IF_ERROR(CheckFloat32(what, t));
  if (t.shape() != param.shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected shape ", ShapeToString(param.shape),
                     " (its parameter's), got ", ShapeToString(t.shape())));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOptimizer(const OptimizerConfig& config) {
  if (const auto* sgd = std::get_if<SgdConfig>(&config.kind)) {
    RETURN_IF_ERROR(ValidateSgd(*sgd));
  } else {
    RETURN_IF_ERROR(ValidateAdam(std::get<AdamConfig>(config.kind)));
  }
  return CheckRange("", {"max_grad_norm", config.max_grad_norm});
}

std::vector<std::string> OptimizerStateNames(const OptimizerConfig& config) {
  if (const auto* sgd = std::get_if<SgdConfig>(&config.kind)) {
    if (sgd->momentum == 0) return {};
    return {std::string(kMomentumBuffer)};
  }
  std::vector<std::string> names = {std::string(kExpAvg),
                                    std::string(kExpAvgSq)};
  if (std::get<AdamConfig>(config.kind).amsgrad) {
    names.emplace_back(kMaxExpAvgSq);
  }
  return names;
}

absl::Status ValidateOptimizerState(
    const OptimizerConfig& config,
    const std::map<std::string, TensorMeta>& parameters,
    const OptimizerState& state) {
  const std::vector<std::string> names = OptimizerStateNames(config);
  for (const auto& [key, tensor] : state) {
    RETURN_IF_ERROR(CheckStateKey(config, names, key, parameters));
    const std::string param(SplitStateKey(key).first);
    RETURN_IF_ERROR(CheckStateTensor(key, parameters.at(param), tensor));
  }
  return absl::OkStatus();
}

absl::StatusOr<StepResult> ApplyStep(const OptimizerConfig& config,
                                     const StepInput& input) {
  RETURN_IF_ERROR(ValidateOptimizer(config));
  RETURN_IF_ERROR(ValidateStepInput(config, input));
  StepResult result;
  const float total_norm = TotalGradNorm(*input.gradients);
  result.grad_norm = total_norm;
  const float grad_scale =
      config.max_grad_norm > 0
          ? ClipCoefficient(total_norm, config.max_grad_norm)
          : 1.0f;
  const OptimizerState no_state;
  const OptimizerState& state = input.state ? *input.state : no_state;
  const auto* sgd = std::get_if<SgdConfig>(&config.kind);
  const auto* adam = std::get_if<AdamConfig>(&config.kind);
  const double lr = input.learning_rate != 0 ? input.learning_rate
                    : sgd                    ? sgd->lr
                                             : adam->lr;
  for (const auto& [name, param] : *input.parameters) {
    const ParamStep p{name, param, input.gradients->at(name), state, result};
    if (sgd != nullptr) {
      SgdStep(MakeSgdScalars(*sgd, lr, grad_scale), p);
    } else {
      AdamStep(MakeAdamScalars(*adam, lr, input.step, grad_scale), p);
    }
  }
  return result;
}

}  // namespace gradserve
