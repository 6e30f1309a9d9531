// Training diagnostics of one run: statistics of every node output as the
// forward pass computes it, the norm of its gradient as the backward pass
// completes it, per-parameter gradient norms, and warnings in words. A
// DiagnosticsRecorder is the run's RunObserver; runs without one do no work
// for diagnostics at all.
//
// Definitions (API.md "Diagnostics"): mean and std (population) are over the
// finite elements; a ReLU-like output (ReLU, LeakyReLU) of rank >= 2 has
// units along dim 1 (features of [N, F], channels of [N, C, ...]), and a
// unit is dead when its output is <= 0 for every sample (and position); a
// Sigmoid or Tanh output is saturated within 1e-3 of its bounds.
// Warnings: half or more of a ReLU-like node's units dead (with a batch of
// 2 or more), half or more of a Sigmoid/Tanh node's outputs saturated, the
// node that produced the first NaN/inf, and vanishing gradients: the first
// parametrised node's gradient norm (over its parameters) below 1e-3 of the
// last one's.
#ifndef GRADSERVE_CORE_ANALYSIS_DIAGNOSTICS_H_
#define GRADSERVE_CORE_ANALYSIS_DIAGNOSTICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/exec/tape.h"

namespace gradserve {

struct ValueDiagnostics {
  std::string value;
  std::string node;
  std::string op;
  double mean = 0;
  double std = 0;
  double zero_fraction = 0;
  double dead_fraction = 0;
  double saturated_fraction = 0;
  int64_t non_finite = 0;
  double grad_norm = 0;  // 0 when no gradient reached the value
  int64_t batch = 0;     // dim 0 (rank >= 1), for the dead-unit rule
};

struct Diagnostics {
  std::vector<ValueDiagnostics> values;  // node outputs, in execution order
  std::map<std::string, double> parameter_grad_norms;
  std::vector<std::string> warnings;
  // The node whose output had the first NaN or inf ("" when none).
  std::string first_non_finite_node;
};

class DiagnosticsRecorder : public RunObserver {
 public:
  void OnOutput(const Program& program, int node, int value,
                const Tensor& plain) override;
  void OnGradient(const Program& program, int value,
                  const Tensor& plain) override;
  // The diagnostics of the run whose wrt gradients are `gradients`.
  Diagnostics Finish(const std::map<std::string, Tensor>& gradients) const;

 private:
  const Program* program_ = nullptr;
  std::vector<ValueDiagnostics> values_;
  absl::flat_hash_map<int, size_t> slots_;  // value id -> values_ index
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ANALYSIS_DIAGNOSTICS_H_
