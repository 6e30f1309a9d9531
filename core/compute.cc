#include "core/compute.h"

#include <limits>

#include "absl/container/flat_hash_set.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

}  // namespace

absl::StatusOr<RunResult> Compute(const GraphDef& graph,
                                  const ComputeArgs& args,
                                  const Limits& limits) {
  PlanRequest request;
  for (const auto& [name, tensor] : args.feeds)
    request.given[name] = tensor.meta();
  request.fetch = args.fetch;
  request.loss = args.loss;
  for (const auto& [name, seed] : args.output_gradients) {
    request.seeded.push_back(name);
  }
  request.wrt = args.wrt;
  request.mode = args.mode;
  request.float_dtype = args.float_dtype;
  ASSIGN_OR_RETURN(auto plan, Plan::Build(graph, request, limits));
  RunArgs run;
  run.feeds = args.feeds;
  run.seeds = args.output_gradients;
  run.seed = args.seed;
  run.check_cancelled = args.check_cancelled;
  return Execute(*plan, run);
}

absl::StatusOr<GraphSummary> Describe(
    const GraphDef& graph,
    const absl::flat_hash_map<std::string, TensorMeta>& inputs,
    const Limits& limits) {
  PlanRequest request;
  request.given = inputs;
  request.describe_only = true;
  ASSIGN_OR_RETURN(auto plan, Plan::Build(graph, request, limits));
  GraphSummary summary;
  for (const PlannedNode& node : plan->nodes()) {
    NodeSummary s;
    s.name = node.def->name;
    s.op = node.def->op;
    s.outputs.assign(node.op->outputs().begin(),
                     node.op->outputs().begin() + node.outputs.size());
    absl::flat_hash_set<int> counted;
    for (int in : node.inputs) {
      if (in < 0 || !counted.insert(in).second) continue;
      const ValueInfo& v = plan->values()[in];
      if (v.kind == ValueKind::kParameter) {
        s.parameters += v.meta.num_elements();
      }
    }
    s.forward_flops = node.op->ForwardFlops();
    summary.forward_flops =
        SaturatingAdd(summary.forward_flops, s.forward_flops);
    summary.backward_flops =
        SaturatingAdd(summary.backward_flops, node.op->BackwardFlops());
    summary.nodes.push_back(std::move(s));
  }
  for (const ValueInfo& v : plan->values()) {
    if (v.kind == ValueKind::kParameter) {
      summary.total_parameters += v.meta.num_elements();
    }
  }
  return summary;
}

}  // namespace gradserve
