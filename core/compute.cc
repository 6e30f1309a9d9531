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

NodeSummary Summarize(const Program& program, const ProgramNode& pn) {
  NodeSummary s;
  s.name = pn.node->def.name;
  s.op = pn.node->def.op;
  s.outputs.assign(pn.op->outputs().begin(),
                   pn.op->outputs().begin() + pn.node->outputs.size());
  absl::flat_hash_set<int> counted;
  for (int in : pn.node->inputs) {
    if (in < 0 || !counted.insert(in).second) continue;
    if (program.kind(in) == ValueKind::kParameter) {
      s.parameters += program.meta(in).num_elements();
    }
  }
  s.forward_flops = pn.op->ForwardFlops();
  return s;
}

}  // namespace

ProgramRequest ProgramRequestFor(const ComputeArgs& args) {
  ProgramRequest request;
  for (const auto& [name, tensor] : args.feeds) {
    request.given[name] = tensor.meta();
  }
  request.fetch = args.fetch;
  request.loss = args.loss;
  for (const auto& [name, seed] : args.output_gradients) {
    request.seeded.push_back(name);
  }
  request.wrt = args.wrt;
  request.mode = args.mode;
  request.float_dtype = args.float_dtype;
  return request;
}

ValueSet ValuesOf(const GraphDef& graph) {
  ValueSet values;
  values.parameters = graph.parameters;
  values.buffers = graph.buffers;
  return values;
}

absl::StatusOr<RunResult> Compute(const GraphDef& graph,
                                  const ComputeArgs& args,
                                  const Limits& limits) {
  ASSIGN_OR_RETURN(auto index, GraphIndex::Build(graph, limits));
  ASSIGN_OR_RETURN(
      auto program,
      Program::Compile(std::move(index), ProgramRequestFor(args), limits));
  RunControl control{args.seed, args.check_cancelled};
  return Run(std::move(program), args.feeds, ValuesOf(graph),
             args.output_gradients, control);
}

absl::StatusOr<GraphSummary> Describe(
    std::shared_ptr<const GraphIndex> index,
    const absl::flat_hash_map<std::string, TensorMeta>& inputs,
    const Limits& limits) {
  ProgramRequest request;
  request.given = inputs;
  request.describe_only = true;
  ASSIGN_OR_RETURN(auto program,
                   Program::Compile(std::move(index), request, limits));
  GraphSummary summary;
  for (const ProgramNode& pn : program->nodes()) {
    NodeSummary s = Summarize(*program, pn);
    summary.forward_flops =
        SaturatingAdd(summary.forward_flops, s.forward_flops);
    summary.backward_flops =
        SaturatingAdd(summary.backward_flops, pn.op->BackwardFlops());
    summary.nodes.push_back(std::move(s));
  }
  const auto& values = program->index().values();
  for (size_t id = 0; id < values.size(); ++id) {
    if (values[id].kind == ValueKind::kParameter) {
      summary.total_parameters += values[id].declared.num_elements();
    }
  }
  return summary;
}

absl::StatusOr<GraphSummary> Describe(
    const GraphDef& graph,
    const absl::flat_hash_map<std::string, TensorMeta>& inputs,
    const Limits& limits) {
  ASSIGN_OR_RETURN(auto index, GraphIndex::Build(graph, limits));
  return Describe(std::move(index), inputs, limits);
}

}  // namespace gradserve
