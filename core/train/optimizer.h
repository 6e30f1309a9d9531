// Optimizer steps computed exactly as torch.optim 1.13 computes them on CPU
// (SGD, Adam, AdamW; torch.nn.utils.clip_grad_norm_ before the step), in
// each parameter's dtype (float32, or float64 as torch.optim steps a
// float64 parameter) and in torch's operation order. A step never writes its
// inputs: it returns new parameter and state tensors, so a held activation or
// another reader can keep using the old version.
#ifndef GRADSERVE_CORE_TRAIN_OPTIMIZER_H_
#define GRADSERVE_CORE_TRAIN_OPTIMIZER_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace gradserve {

// torch.optim.SGD. lr has no default: 0 is an error.
struct SgdConfig {
  double lr = 0;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// torch.optim.Adam, or torch.optim.AdamW when decoupled_weight_decay (whose
// torch default weight_decay of 1e-2 is the caller's to fill in).
struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
  bool decoupled_weight_decay = false;
};

struct OptimizerConfig {
  std::variant<SgdConfig, AdamConfig> kind;
  double max_grad_norm = 0;  // 0 = no clipping
};

// INVALID_ARGUMENT naming the field when a hyper-parameter is out of torch's
// range (SGD lr > 0; momentum, dampening, weight decay, eps, lr >= 0; betas
// in [0, 1); nesterov needs momentum > 0 and dampening 0; all finite) or
// max_grad_norm < 0.
absl::Status ValidateOptimizer(const OptimizerConfig& config);

// The torch state names this optimizer keeps per parameter: momentum_buffer
// (SGD with momentum), exp_avg and exp_avg_sq (Adam), max_exp_avg_sq
// (amsgrad).
std::vector<std::string> OptimizerStateNames(const OptimizerConfig& config);

// Keys "<parameter>/<torch state name>", e.g. "W1/exp_avg".
using OptimizerState = std::map<std::string, Tensor>;

struct StepInput {
  // The trained parameters (float32 or float64), current version. Frozen ones
  // are left out by the caller.
  const std::map<std::string, Tensor>* parameters = nullptr;
  // One per parameter, same names, shapes and dtypes.
  const std::map<std::string, Tensor>* gradients = nullptr;
  // May lack entries (the first step): a missing tensor starts as torch
  // starts it (zeros; SGD's momentum buffer: the first gradient).
  const OptimizerState* state = nullptr;
  // The number this step will have: 1 for the first (Adam's bias correction).
  int64_t step = 1;
  // 0 = the config's lr; else the lr of this step (any schedule).
  double learning_rate = 0;
};

struct StepResult {
  std::map<std::string, Tensor> parameters;  // new tensors
  OptimizerState state;                      // new tensors, every entry
  // clip_grad_norm_'s total_norm: the 2-norm of the per-parameter 2-norms,
  // taken in name order, before clipping (computed with or without it).
  double grad_norm = 0;
};

// One optimizer step: clipping (when max_grad_norm > 0), then the update.
// INVALID_ARGUMENT naming the tensor or field for a bad config, a missing or
// misshapen gradient, a parameter not float32 or float64, a gradient or
// state tensor of another dtype than its parameter's, bad state, step < 1 or a
// negative or non-finite learning_rate.
absl::StatusOr<StepResult> ApplyStep(const OptimizerConfig& config,
                                     const StepInput& input);

// For restoring checkpoints: every key must be "<parameter>/<a state name
// this optimizer uses>" with the parameter's shape and dtype. The message
// names the key and what was expected. A subset of the keys is fine.
absl::Status ValidateOptimizerState(
    const OptimizerConfig& config,
    const std::map<std::string, TensorMeta>& parameters,
    const OptimizerState& state);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_TRAIN_OPTIMIZER_H_
