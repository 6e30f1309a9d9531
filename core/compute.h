// One-shot entry points over a graph with its values: Compute (forward and,
// given a loss or seeds, backward) and Describe (shapes, parameter counts,
// FLOPs). Each builds the graph's index and compiles a program for the
// call; the runtime uses the same pieces with a program cache.
#ifndef GRADSERVE_CORE_COMPUTE_H_
#define GRADSERVE_CORE_COMPUTE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/compile/program.h"
#include "core/exec/tape.h"
#include "core/graph.h"
#include "core/op.h"

namespace gradserve {

struct ComputeArgs {
  TensorMap feeds;
  std::vector<std::string> fetch;  // empty = graph.outputs
  std::string loss;
  TensorMap output_gradients;
  std::vector<std::string> wrt;  // empty with loss/seeds = all parameters
  Mode mode = Mode::kTrain;
  uint64_t seed = 0;
  // float32, or float64 for the reference path.
  DType float_dtype = DType::kFloat32;
  std::function<absl::Status()> check_cancelled;
};

// What a program for these arguments is compiled for.
ProgramRequest ProgramRequestFor(const ComputeArgs& args);
// The graph's parameters and buffers as a value set (tensors shared).
ValueSet ValuesOf(const GraphDef& graph);

absl::StatusOr<RunResult> Compute(const GraphDef& graph,
                                  const ComputeArgs& args,
                                  const Limits& limits);

struct NodeSummary {
  std::string name;
  std::string op;
  std::vector<TensorMeta> outputs;
  int64_t parameters = 0;  // trainable elements among the node's inputs
  int64_t forward_flops = 0;
};

struct GraphSummary {
  std::vector<NodeSummary> nodes;  // in execution order
  int64_t total_parameters = 0;
  int64_t forward_flops = 0;
  int64_t backward_flops = 0;
};

absl::StatusOr<GraphSummary> Describe(
    std::shared_ptr<const GraphIndex> index,
    const absl::flat_hash_map<std::string, TensorMeta>& inputs,
    const Limits& limits);
absl::StatusOr<GraphSummary> Describe(
    const GraphDef& graph,
    const absl::flat_hash_map<std::string, TensorMeta>& inputs,
    const Limits& limits);

}  // namespace gradserve

#endif  // GRADSERVE_CORE_COMPUTE_H_
