// Runs a Plan: the forward pass in order, freeing values nobody reads again,
// then reverse-mode autodiff from the loss and seeds, summing gradients where
// a value fans out.
#ifndef GRADSERVE_CORE_EXECUTOR_H_
#define GRADSERVE_CORE_EXECUTOR_H_

#include <functional>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/plan.h"
#include "core/tensor.h"

namespace gradserve {

struct RunArgs {
  // Values for graph inputs, and overrides of parameters and buffers. Float
  // tensors of another float dtype than the plan's are converted.
  absl::flat_hash_map<std::string, Tensor> feeds;
  // dL/dv seeds, of each value's dtype and shape.
  absl::flat_hash_map<std::string, Tensor> seeds;
  uint64_t seed = 0;
  // Polled between nodes; a non-OK status stops the run with that status.
  std::function<absl::Status()> check_cancelled;
};

struct RunResult {
  std::map<std::string, Tensor> outputs;    // fetched values
  std::map<std::string, Tensor> gradients;  // by wrt value name
  std::map<std::string, Tensor> buffers;    // updated buffers
};

absl::StatusOr<RunResult> Execute(const Plan& plan, const RunArgs& args);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_EXECUTOR_H_
