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
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && \
    !defined(__clang__)
// A clone with hardware FMA and AVX vectors for the CPUs that have them; in
// the default clone std::fma is a libm call. Both give the same bits.
// (clang 14, which builds the fuzzer, has no target_clones on templates.)
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

absl::Status CheckPlain(absl::string_view what, const Tensor& t) {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no value"));
  }
  if (!t.is_plain()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a plain row-major tensor"));
  }
  return absl::OkStatus();
}

// A parameter: float32 or float64.
absl::Status CheckParameter(absl::string_view what, const Tensor& t) {
  RETURN_IF_ERROR(CheckPlain(what, t));
  if (t.dtype() != DType::kFloat32 && t.dtype() != DType::kFloat64) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be float32 or float64, got ", DTypeName(t.dtype())));
  }
  return absl::OkStatus();
}

// A gradient or state tensor: its parameter's dtype.
absl::Status CheckDtype(absl::string_view what, const Tensor& t, DType dtype) {
  RETURN_IF_ERROR(CheckPlain(what, t));
  if (t.dtype() != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be ", DTypeName(dtype),
                     " (its parameter's dtype), got ", DTypeName(t.dtype())));
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
  RETURN_IF_ERROR(CheckDtype(absl::StrCat("gradient '", name, "'"), it->second,
                             param.dtype()));
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
        CheckParameter(absl::StrCat("parameter '", name, "'"), param));
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
//
// Each kernel is a template over the parameter's element type T: float
// (torch's float32 arithmetic, scalars rounded to float where torch rounds
// them) or double (a float64 parameter: torch computes in float64 and takes
// the Python floats as they are).

// torch.norm(x, 2) of a contiguous tensor: eight lanes of fused squares, the
// lanes summed in order, the tail fused onto that sum.
constexpr int kLanes = 8;

template <typename T>
GS_FMA_CLONES T TorchNorm2(const T* x, int64_t n) {
  T lanes[kLanes] = {};
  const int64_t body = n - n % kLanes;
  for (int64_t i = 0; i < body; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      lanes[j] = std::fma(x[i + j], x[i + j], lanes[j]);
    }
  }
  T sum = lanes[0];
  for (int j = 1; j < kLanes; ++j) sum += lanes[j];
  for (int64_t i = body; i < n; ++i) sum = std::fma(x[i], x[i], sum);
  return std::sqrt(sum);
}

// clip_grad_norm_'s clamped coefficient: `max_norm / (total_norm + 1e-6)` is
// Tensor.__rtruediv__, reciprocal() * max_norm, in the norm's dtype;
// clamp(max=1) keeps a NaN.
template <typename T>
T ClipCoefficient(T total_norm, double max_norm) {
  const T coef =
      (T(1) / (total_norm + static_cast<T>(1e-6))) * static_cast<T>(max_norm);
  return coef > T(1) ? T(1) : coef;
}

// torch's _single_tensor_sgd for one parameter.
template <typename T>
struct SgdScalars {
  T grad_scale;  // the clipping coefficient, or 1
  bool has_weight_decay;
  T weight_decay;
  bool has_momentum;
  T momentum;
  T dampening_complement;  // 1 - dampening
  bool nesterov;
  T neg_lr;
};

// buf_in null: the first step, whose buffer is the gradient.
template <typename T>
GS_FMA_CLONES void SgdKernel(const SgdScalars<T> s, int64_t n, const T* param,
                             const T* grad, const T* buf_in, T* buf_out,
                             T* param_out) {
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i] * s.grad_scale;
    if (s.has_weight_decay) d = std::fma(param[i], s.weight_decay, d);
    if (s.has_momentum) {
      const T buf = buf_in == nullptr ? d
                                      : std::fma(d, s.dampening_complement,
                                                 buf_in[i] * s.momentum);
      buf_out[i] = buf;
      d = s.nesterov ? std::fma(buf, s.momentum, d) : buf;
    }
    param_out[i] = std::fma(d, s.neg_lr, param[i]);
  }
}

// torch's _single_tensor_adam and _single_tensor_adamw for one parameter.
template <typename T>
struct AdamScalars {
  T grad_scale;
  T param_scale;          // AdamW: 1 - lr * weight_decay; Adam: 1
  bool has_weight_decay;  // Adam's L2 term
  T weight_decay;
  T beta1, one_minus_beta1, beta2, one_minus_beta2;
  bool amsgrad;
  T bias_correction2_sqrt, eps, neg_step_size;
};

template <typename T>
struct Moments {
  T* exp_avg;
  T* exp_avg_sq;
  T* max_exp_avg_sq;  // amsgrad only
};

// torch.maximum: NaN when either is.
template <typename T>
inline T Maximum(T a, T b) {
  return (a < b || b != b) ? b : a;
}

// The tensors never overlap: __restrict lets the loop vectorize without
// run-time alias checks.
template <bool kAmsgrad, typename T>
inline void AdamLoop(const AdamScalars<T>& s, int64_t n,
                     const T* __restrict param, const T* __restrict grad,
                     Moments<const T> in, Moments<T> out,
                     T* __restrict param_out) {
  const T* __restrict m_in = in.exp_avg;
  const T* __restrict v_in = in.exp_avg_sq;
  const T* __restrict v_max_in = in.max_exp_avg_sq;
  T* __restrict m_out = out.exp_avg;
  T* __restrict v_out = out.exp_avg_sq;
  T* __restrict v_max_out = out.max_exp_avg_sq;
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] * s.grad_scale;
    const T p = param[i] * s.param_scale;
    if (s.has_weight_decay) g = std::fma(param[i], s.weight_decay, g);
    const T m = std::fma(g, s.one_minus_beta1, m_in[i] * s.beta1);
    const T v = std::fma(s.one_minus_beta2 * g, g, v_in[i] * s.beta2);
    m_out[i] = m;
    v_out[i] = v;
    T v_max = v;
    if constexpr (kAmsgrad) {
      v_max = Maximum(v_max_in[i], v);
      v_max_out[i] = v_max;
    }
    const T denom = std::sqrt(v_max) / s.bias_correction2_sqrt + s.eps;
    param_out[i] = p + (s.neg_step_size * m) / denom;
  }
}

template <typename T>
GS_FMA_CLONES void AdamKernel(const AdamScalars<T> s, int64_t n, const T* param,
                              const T* grad, Moments<const T> in,
                              Moments<T> out, T* param_out) {
  if (s.amsgrad) {
    AdamLoop<true>(s, n, param, grad, in, out, param_out);
  } else {
    AdamLoop<false>(s, n, param, grad, in, out, param_out);
  }
}

// ---- Steps -----------------------------------------------------------------

// One parameter's update: its inputs, and where the new tensors go (of the
// parameter's dtype).
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
    return t != nullptr ? *t : Tensor::Zeros(param.dtype(), param.shape());
  }
  template <typename T>
  T* NewState(absl::string_view state_name) const {
    Tensor& t = result.state[absl::StrCat(name, "/", state_name)];
    t = Tensor::Empty(param.dtype(), param.shape());
    return t.data<T>();
  }
  template <typename T>
  T* NewParam() const {
    Tensor& t = result.parameters[name];
    t = Tensor::Empty(param.dtype(), param.shape());
    return t.data<T>();
  }
};

template <typename T>
SgdScalars<T> MakeSgdScalars(const SgdConfig& c, double lr, T grad_scale) {
  SgdScalars<T> s;
  s.grad_scale = grad_scale;
  s.has_weight_decay = c.weight_decay != 0;
  s.weight_decay = static_cast<T>(c.weight_decay);
  s.has_momentum = c.momentum != 0;
  s.momentum = static_cast<T>(c.momentum);
  s.dampening_complement = static_cast<T>(1 - c.dampening);
  s.nesterov = c.nesterov;
  s.neg_lr = static_cast<T>(-lr);
  return s;
}

template <typename T>
void SgdStep(const SgdScalars<T>& s, const ParamStep& p) {
  const T* buf_in = nullptr;
  T* buf_out = nullptr;
  if (s.has_momentum) {
    const Tensor* old = p.OldState(kMomentumBuffer);
    if (old != nullptr) buf_in = old->data<T>();
    buf_out = p.NewState<T>(kMomentumBuffer);
  }
  SgdKernel(s, p.param.num_elements(), p.param.data<T>(), p.grad.data<T>(),
            buf_in, buf_out, p.NewParam<T>());
}

template <typename T>
AdamScalars<T> MakeAdamScalars(const AdamConfig& c, double lr, int64_t step,
                               T grad_scale) {
  // As torch: Python floats, rounded to T where the tensor ops take them.
  const double bias_correction1 = 1 - std::pow(c.beta1, step);
  const double bias_correction2 = 1 - std::pow(c.beta2, step);
  const double step_size = lr / bias_correction1;
  AdamScalars<T> s;
  s.grad_scale = grad_scale;
  s.param_scale =
      c.decoupled_weight_decay ? static_cast<T>(1 - lr * c.weight_decay) : T(1);
  s.has_weight_decay = !c.decoupled_weight_decay && c.weight_decay != 0;
  s.weight_decay = static_cast<T>(c.weight_decay);
  s.beta1 = static_cast<T>(c.beta1);
  s.one_minus_beta1 = static_cast<T>(1 - c.beta1);
  s.beta2 = static_cast<T>(c.beta2);
  s.one_minus_beta2 = static_cast<T>(1 - c.beta2);
  s.amsgrad = c.amsgrad;
  s.bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  s.eps = static_cast<T>(c.eps);
  s.neg_step_size = static_cast<T>(-step_size);
  return s;
}

template <typename T>
void AdamStep(const AdamScalars<T>& s, const ParamStep& p) {
  const Tensor exp_avg = p.OldStateOrZeros(kExpAvg);
  const Tensor exp_avg_sq = p.OldStateOrZeros(kExpAvgSq);
  Tensor max_exp_avg_sq;
  Moments<const T> in{exp_avg.data<T>(), exp_avg_sq.data<T>(), nullptr};
  Moments<T> out{p.NewState<T>(kExpAvg), p.NewState<T>(kExpAvgSq), nullptr};
  if (s.amsgrad) {
    max_exp_avg_sq = p.OldStateOrZeros(kMaxExpAvgSq);
    in.max_exp_avg_sq = max_exp_avg_sq.data<T>();
    out.max_exp_avg_sq = p.NewState<T>(kMaxExpAvgSq);
  }
  AdamKernel(s, p.param.num_elements(), p.param.data<T>(), p.grad.data<T>(), in,
             out, p.NewParam<T>());
}

// clip_grad_norm_'s total_norm over the gradients in name order: the norm
// of the per-gradient norms, in float64 when any gradient is (torch.stack
// promotes), else in float32.
bool AnyFloat64(const std::map<std::string, Tensor>& tensors) {
  for (const auto& [name, t] : tensors) {
    if (t.dtype() == DType::kFloat64) return true;
  }
  return false;
}

template <typename T>
T GradNorm(const Tensor& grad) {
  if (grad.dtype() == DType::kFloat64) {
    return static_cast<T>(TorchNorm2(grad.data<double>(), grad.num_elements()));
  }
  return static_cast<T>(TorchNorm2(grad.data<float>(), grad.num_elements()));
}

template <typename T>
T TotalGradNorm(const std::map<std::string, Tensor>& gradients) {
  std::vector<T> norms;
  norms.reserve(gradients.size());
  for (const auto& [name, grad] : gradients) norms.push_back(GradNorm<T>(grad));
  return TorchNorm2(norms.data(), static_cast<int64_t>(norms.size()));
}

// The clipping coefficient (1 without clipping) and the total norm, both in
// the norm's dtype T.
struct Clipping {
  double total_norm;
  double coefficient;
};

template <typename T>
Clipping ClipOf(const OptimizerConfig& config,
                const std::map<std::string, Tensor>& gradients) {
  const T total = TotalGradNorm<T>(gradients);
  const T coef = config.max_grad_norm > 0
                     ? ClipCoefficient(total, config.max_grad_norm)
                     : T(1);
  return {total, coef};
}

// One parameter's step in its dtype T; `clip.coefficient` is rounded to T
// (clip_coef_clamped.to(g) for a float32 gradient of a float64 norm).
template <typename T>
void StepParameter(const OptimizerConfig& config, double lr, int64_t step,
                   const Clipping& clip, const ParamStep& p) {
  const T grad_scale = static_cast<T>(clip.coefficient);
  if (const auto* sgd = std::get_if<SgdConfig>(&config.kind)) {
    SgdStep(MakeSgdScalars<T>(*sgd, lr, grad_scale), p);
  } else {
    AdamStep(MakeAdamScalars<T>(std::get<AdamConfig>(config.kind), lr, step,
                                grad_scale),
             p);
  }
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
  RETURN_IF_ERROR(CheckDtype(what, t, param.dtype));
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
  const Clipping clip = AnyFloat64(*input.gradients)
                            ? ClipOf<double>(config, *input.gradients)
                            : ClipOf<float>(config, *input.gradients);
  result.grad_norm = clip.total_norm;
  const OptimizerState no_state;
  const OptimizerState& state = input.state ? *input.state : no_state;
  const auto* sgd = std::get_if<SgdConfig>(&config.kind);
  const double lr = input.learning_rate != 0 ? input.learning_rate
                    : sgd != nullptr         ? sgd->lr
                                     : std::get<AdamConfig>(config.kind).lr;
  for (const auto& [name, param] : *input.parameters) {
    const ParamStep p{name, param, input.gradients->at(name), state, result};
    if (param.dtype() == DType::kFloat64) {
      StepParameter<double>(config, lr, input.step, clip, p);
    } else {
      StepParameter<float>(config, lr, input.step, clip, p);
    }
  }
  return result;
}

}  // namespace gradserve
