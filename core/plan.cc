#include "core/plan.h"

#include <algorithm>
#include <deque>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/op_registry.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

absl::string_view KindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kInput:
      return "a graph input";
    case ValueKind::kParameter:
      return "a parameter";
    case ValueKind::kBuffer:
      return "a buffer";
    case ValueKind::kNodeOutput:
      return "a node output";
  }
  return "";
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Plan>> Plan::Build(const GraphDef& graph,
                                                  const PlanRequest& request,
                                                  const Limits& limits) {
  auto plan = std::unique_ptr<Plan>(new Plan());
  plan->graph_ = &graph;
  plan->mode_ = request.mode;
  plan->float_dtype_ = request.float_dtype;
  RETURN_IF_ERROR(plan->IndexValues(request, limits));
  RETURN_IF_ERROR(plan->SortAndPrune(request));
  RETURN_IF_ERROR(plan->InferNodes(request, limits));
  if (request.describe_only) return plan;
  RETURN_IF_ERROR(plan->AnalyseGradients(request));
  RETURN_IF_ERROR(plan->CheckMemory(limits));
  // In execution order, so that each op knows its inputs' layouts.
  for (PlannedNode& node : plan->nodes_) {
    PrepareInfo info{node.runs_backward, node.needs_grad, {}};
    for (int in : node.inputs) {
      const int producer = in >= 0 ? plan->values_[in].producer : -1;
      std::shared_ptr<const Layout> layout;
      if (producer >= 0 && node.op->HandlesLayouts()) {
        const PlannedNode& p = plan->nodes_[producer];
        const auto slot = std::find(p.outputs.begin(), p.outputs.end(), in);
        layout = p.op->OutputLayout(static_cast<int>(slot - p.outputs.begin()));
      }
      info.input_layouts.push_back(std::move(layout));
    }
    RETURN_IF_ERROR(node.op->Prepare(info));
  }
  return plan;
}

int Plan::ValueId(const std::string& name) const {
  auto it = value_ids_.find(name);
  return it == value_ids_.end() ? -1 : it->second;
}

absl::StatusOr<int> Plan::LookUp(const std::string& name,
                                 absl::string_view what) const {
  int id = ValueId(name);
  if (id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " names '", name,
                     "', which no graph input, parameter, buffer or node "
                     "output defines"));
  }
  return id;
}

// Defines every value name exactly once and checks each node's structure
// against its op's schema.
absl::Status Plan::IndexValues(const PlanRequest& request,
                               const Limits& limits) {
  const GraphDef& g = *graph_;
  if (static_cast<int64_t>(g.nodes.size()) > limits.max_graph_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", g.nodes.size(), " nodes, over the limit of ",
                     limits.max_graph_nodes));
  }
  auto define = [&](const std::string& name, ValueKind kind,
                    absl::string_view where) -> absl::Status {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": value names must not be empty"));
    }
    auto [it, inserted] =
        value_ids_.emplace(name, static_cast<int>(values_.size()));
    if (!inserted) {
      const ValueInfo& first = values_[it->second];
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": value '", name, "' is defined twice (it is already ",
          KindName(first.kind), ")"));
    }
    values_.push_back(ValueInfo{name, kind, {}, -1});
    return absl::OkStatus();
  };
  for (const std::string& name : g.inputs) {
    RETURN_IF_ERROR(define(name, ValueKind::kInput, "graph input"));
  }
  // Parameters and buffers have their metas from the start (a request may
  // override them below); graph inputs get theirs when needed.
  auto define_state = [&](const std::string& name, const Tensor& tensor,
                          ValueKind kind, absl::string_view what) {
    RETURN_IF_ERROR(define(name, kind, what));
    auto given = request.given.find(name);
    values_.back().meta =
        given != request.given.end() ? given->second : tensor.meta();
    if (IsFloating(values_.back().meta.dtype)) {
      values_.back().meta.dtype = float_dtype_;
    }
    return absl::OkStatus();
  };
  for (const auto& [name, tensor] : g.parameters) {
    RETURN_IF_ERROR(
        define_state(name, tensor, ValueKind::kParameter, "parameter"));
    if (!IsFloating(values_.back().meta.dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", name, "' must be float32, got ",
                       values_.back().meta.ToString()));
    }
  }
  for (const auto& [name, tensor] : g.buffers) {
    RETURN_IF_ERROR(define_state(name, tensor, ValueKind::kBuffer, "buffer"));
  }
  absl::flat_hash_set<absl::string_view> node_names;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const NodeDef& node = g.nodes[n];
    if (node.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("node #", n, " (", node.op, ") has no name"));
    }
    if (!node_names.insert(node.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("node name '", node.name, "' is used twice"));
    }
    const OpSchema* schema = OpRegistry::Global().Find(node.op);
    if (schema == nullptr) {
      return absl::UnimplementedError(
          absl::StrCat("node '", node.name, "': unknown op '", node.op,
                       "' (GetServerInfo lists the supported ops)"));
    }
    size_t required = 0;
    for (const InputSpec& in : schema->inputs) required += !in.optional;
    bool variadic = !schema->inputs.empty() && schema->inputs.back().variadic;
    if (node.inputs.size() < required ||
        (!variadic && node.inputs.size() > schema->inputs.size())) {
      std::vector<std::string> names;
      for (const InputSpec& in : schema->inputs) {
        names.push_back(absl::StrCat(in.name, in.optional ? " (optional)" : "",
                                     in.variadic ? "..." : ""));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("node '", node.name, "' (", node.op,
                       "): expected inputs [", absl::StrJoin(names, ", "),
                       "], got ", node.inputs.size(), " inputs"));
    }
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const InputSpec& spec =
          schema->inputs[std::min(i, schema->inputs.size() - 1)];
      if (node.inputs[i].empty() && !spec.optional) {
        return absl::InvalidArgumentError(
            absl::StrCat("node '", node.name, "' (", node.op, "): input '",
                         spec.name, "' is required but was left empty"));
      }
    }
    int max_outputs = static_cast<int>(schema->outputs.size());
    int num_outputs = static_cast<int>(node.outputs.size());
    if (num_outputs < schema->min_outputs || num_outputs > max_outputs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node.name, "' (", node.op, "): expected ",
          schema->min_outputs == max_outputs
              ? absl::StrCat(max_outputs)
              : absl::StrCat(schema->min_outputs, " to ", max_outputs),
          " outputs [", absl::StrJoin(schema->outputs, ", "), "], got ",
          num_outputs));
    }
    for (const std::string& out : node.outputs) {
      RETURN_IF_ERROR(define(out, ValueKind::kNodeOutput,
                             absl::StrCat("node '", node.name, "'")));
      values_.back().producer = static_cast<int>(n);  // fixed up after sort
    }
  }
  for (const NodeDef& node : g.nodes) {
    const OpSchema* schema = OpRegistry::Global().Find(node.op);
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i].empty() || value_ids_.contains(node.inputs[i])) {
        continue;
      }
      const InputSpec& spec =
          schema->inputs[std::min(i, schema->inputs.size() - 1)];
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node.name, "' (", node.op, "): input '", spec.name,
          "' refers to '", node.inputs[i],
          "', which no graph input, parameter, buffer or node output "
          "defines"));
    }
  }
  for (const std::string& out : g.outputs) {
    RETURN_IF_ERROR(LookUp(out, "graph.outputs").status());
  }
  for (const auto& [name, meta] : request.given) {
    int id = ValueId(name);
    if (id < 0 || values_[id].kind == ValueKind::kNodeOutput) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", name, "' is given a value, but it is ",
          id < 0 ? "not defined by the graph" : "the output of a node",
          "; only graph inputs, parameters and buffers can be fed"));
    }
  }
  return absl::OkStatus();
}

absl::Status Plan::SortAndPrune(const PlanRequest& request) {
  const GraphDef& g = *graph_;
  const int num_nodes = static_cast<int>(g.nodes.size());
  // Kahn's algorithm over producer -> consumer edges, stable in graph order.
  std::vector<int> pending(num_nodes, 0);
  std::vector<std::vector<int>> consumers(num_nodes);
  for (int n = 0; n < num_nodes; ++n) {
    for (const std::string& in : g.nodes[n].inputs) {
      if (in.empty()) continue;
      int producer = values_[value_ids_.at(in)].producer;
      if (producer < 0) continue;
      consumers[producer].push_back(n);
      ++pending[n];
    }
  }
  std::deque<int> ready;
  for (int n = 0; n < num_nodes; ++n) {
    if (pending[n] == 0) ready.push_back(n);
  }
  std::vector<int> order;
  order.reserve(num_nodes);
  while (!ready.empty()) {
    int n = ready.front();
    ready.pop_front();
    order.push_back(n);
    for (int c : consumers[n]) {
      if (--pending[c] == 0) ready.push_back(c);
    }
  }
  if (static_cast<int>(order.size()) != num_nodes) {
    std::vector<std::string> cyclic;
    for (int n = 0; n < num_nodes && cyclic.size() < 8; ++n) {
      if (pending[n] > 0)
        cyclic.push_back(absl::StrCat("'", g.nodes[n].name, "'"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "graph has a cycle through nodes ", absl::StrJoin(cyclic, ", ")));
  }

  // Keep the nodes the requested values depend on.
  std::vector<bool> needed(num_nodes, request.describe_only);
  if (!request.describe_only) {
    std::vector<int> stack;
    auto want = [&](int value) {
      int producer = values_[value].producer;
      if (producer >= 0 && !needed[producer]) {
        needed[producer] = true;
        stack.push_back(producer);
      }
    };
    std::vector<std::string> fetch = request.fetch;
    if (fetch.empty()) fetch = g.outputs;
    for (const std::string& name : fetch) {
      ASSIGN_OR_RETURN(int id, LookUp(name, "fetch"));
      fetch_.push_back(id);
    }
    if (!request.loss.empty()) {
      ASSIGN_OR_RETURN(loss_, LookUp(request.loss, "loss"));
      grad_sources_.push_back(loss_);
      if (std::find(fetch_.begin(), fetch_.end(), loss_) == fetch_.end()) {
        fetch_.push_back(loss_);
      }
    }
    for (const std::string& name : request.seeded) {
      ASSIGN_OR_RETURN(int id, LookUp(name, "output_gradients"));
      grad_sources_.push_back(id);
    }
    for (const std::string& name : request.wrt) {
      ASSIGN_OR_RETURN(int id, LookUp(name, "wrt"));
      wrt_.push_back(id);
    }
    if (fetch_.empty() && grad_sources_.empty()) {
      return absl::InvalidArgumentError(
          "nothing to compute: name values in fetch (or graph.outputs), a "
          "loss, or output_gradients");
    }
    for (int id : fetch_) want(id);
    for (int id : grad_sources_) want(id);
    for (int id : wrt_) want(id);
    while (!stack.empty()) {
      int n = stack.back();
      stack.pop_back();
      for (const std::string& in : g.nodes[n].inputs) {
        if (!in.empty()) want(value_ids_.at(in));
      }
    }
  }

  // Renumber producers to positions in the pruned order.
  std::vector<int> position(num_nodes, -1);
  for (int n : order) {
    if (!needed[n]) continue;
    position[n] = static_cast<int>(nodes_.size());
    PlannedNode node;
    node.def = &g.nodes[n];
    node.schema = OpRegistry::Global().Find(node.def->op);
    nodes_.push_back(std::move(node));
  }
  for (ValueInfo& v : values_) {
    if (v.producer >= 0) v.producer = position[v.producer];
  }
  return absl::OkStatus();
}

absl::Status Plan::InferNodes(const PlanRequest& request,
                              const Limits& limits) {
  std::vector<bool> known(values_.size(), false);
  auto source_meta = [&](int id) -> absl::Status {
    ValueInfo& v = values_[id];
    if (v.kind == ValueKind::kInput) {
      auto given = request.given.find(v.name);
      if (given == request.given.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "graph input '", v.name, "' is needed but was not given",
            request.describe_only ? " (input_shapes)" : " (feeds)"));
      }
      v.meta = given->second;
      if (IsFloating(v.meta.dtype)) v.meta.dtype = float_dtype_;
    }
    RETURN_IF_ERROR(CheckedElementCount(v.meta.shape,
                                        limits.max_tensor_elements,
                                        absl::StrCat("value '", v.name, "'"))
                        .status());
    known[id] = true;
    sources_.push_back(id);
    return absl::OkStatus();
  };
  auto ensure_known = [&](int id) -> absl::Status {
    if (known[id] || values_[id].kind == ValueKind::kNodeOutput) {
      return absl::OkStatus();
    }
    return source_meta(id);
  };
  for (int id : fetch_) RETURN_IF_ERROR(ensure_known(id));
  for (int id : grad_sources_) RETURN_IF_ERROR(ensure_known(id));
  for (int id : wrt_) RETURN_IF_ERROR(ensure_known(id));

  for (PlannedNode& node : nodes_) {
    const NodeDef& def = *node.def;
    const OpSchema& schema = *node.schema;
    ASSIGN_OR_RETURN(
        node.attrs,
        Attributes::Create(def.name, def.op, def.attributes, schema.attrs));
    std::vector<std::string> input_names;
    std::vector<std::optional<TensorMeta>> metas;
    for (size_t i = 0; i < def.inputs.size(); ++i) {
      const InputSpec& spec =
          schema.inputs[std::min(i, schema.inputs.size() - 1)];
      input_names.push_back(
          spec.variadic
              ? absl::StrCat(spec.name, i + 1 - (schema.inputs.size() - 1))
              : spec.name);
      if (def.inputs[i].empty()) {
        node.inputs.push_back(-1);
        metas.push_back(std::nullopt);
        continue;
      }
      int id = value_ids_.at(def.inputs[i]);
      RETURN_IF_ERROR(ensure_known(id));
      node.inputs.push_back(id);
      metas.push_back(values_[id].meta);
    }
    for (size_t i = def.inputs.size(); i < schema.inputs.size(); ++i) {
      metas.push_back(std::nullopt);  // optional inputs not listed
      input_names.push_back(schema.inputs[i].name);
      node.inputs.push_back(-1);
    }
    node.needs_grad.assign(node.inputs.size(), false);
    OpConfig config(def.name, def.op, node.attrs, std::move(input_names),
                    def.inputs, std::move(metas),
                    static_cast<int>(def.outputs.size()), mode_, float_dtype_);
    ASSIGN_OR_RETURN(node.op, schema.create(config));
    node.op->set_node(def.name);
    const std::vector<TensorMeta>& out_metas = node.op->outputs();
    if (out_metas.size() < def.outputs.size()) {
      return absl::InternalError(
          absl::StrCat("node '", def.name, "': op inferred ", out_metas.size(),
                       " outputs for ", def.outputs.size(), " names"));
    }
    for (size_t j = 0; j < def.outputs.size(); ++j) {
      int id = value_ids_.at(def.outputs[j]);
      RETURN_IF_ERROR(
          CheckedElementCount(out_metas[j].shape, limits.max_tensor_elements,
                              absl::StrCat("node '", def.name, "' output '",
                                           def.outputs[j], "'"))
              .status());
      values_[id].meta = out_metas[j];
      known[id] = true;
      node.outputs.push_back(id);
    }
  }
  return absl::OkStatus();
}

absl::Status Plan::AnalyseGradients(const PlanRequest& request) {
  if (grad_sources_.empty()) {
    if (!wrt_.empty()) {
      return absl::InvalidArgumentError(
          "wrt is given but there is nothing to differentiate: name a loss "
          "or output_gradients");
    }
    return absl::OkStatus();
  }
  if (loss_ >= 0) {
    const ValueInfo& loss = values_[loss_];
    if (!IsFloating(loss.meta.dtype) || loss.meta.num_elements() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("loss '", loss.name, "' must be a floating scalar, got ",
                       loss.meta.ToString()));
    }
  }
  for (int id : grad_sources_) {
    if (!IsFloating(values_[id].meta.dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_gradients: '", values_[id].name, "' is ",
                       values_[id].meta.ToString(), " and has no gradient"));
    }
  }
  const bool all_parameters = wrt_.empty();
  if (all_parameters) {
    for (int id = 0; id < static_cast<int>(values_.size()); ++id) {
      if (values_[id].kind == ValueKind::kParameter) wrt_.push_back(id);
    }
  }
  for (int id : wrt_) {
    if (!IsFloating(values_[id].meta.dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("wrt '", values_[id].name, "' is ",
                       values_[id].meta.ToString(), " and has no gradient"));
    }
  }
  // reaches[v]: some gradient source depends on v through floating values.
  std::vector<bool> reaches(values_.size(), false);
  for (int id : grad_sources_) reaches[id] = true;
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    bool any = false;
    for (int out : it->outputs) any = any || reaches[out];
    if (!any) continue;
    for (int in : it->inputs) {
      if (in >= 0 && IsFloating(values_[in].meta.dtype)) reaches[in] = true;
    }
  }
  // from_wrt[v]: v depends on some wrt value through floating values.
  std::vector<bool> from_wrt(values_.size(), false);
  for (int id : wrt_) from_wrt[id] = true;
  for (PlannedNode& node : nodes_) {
    bool any = false;
    for (int in : node.inputs) any = any || (in >= 0 && from_wrt[in]);
    if (!any) continue;
    for (int out : node.outputs) {
      if (IsFloating(values_[out].meta.dtype)) from_wrt[out] = true;
    }
  }
  if (!all_parameters) {
    for (int id : wrt_) {
      if (!reaches[id]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "wrt '", values_[id].name,
            "': neither the loss nor any seeded value depends on it"));
      }
    }
  }
  auto needs = [&](int id) { return id >= 0 && reaches[id] && from_wrt[id]; };
  for (PlannedNode& node : nodes_) {
    bool any_input = false;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      node.needs_grad[i] = needs(node.inputs[i]);
      any_input = any_input || node.needs_grad[i];
    }
    bool any_output = false;
    for (int out : node.outputs) any_output = any_output || needs(out);
    node.runs_backward = any_input && any_output;
    if (node.runs_backward) node.saves = node.op->Saves(node.needs_grad);
  }
  return absl::OkStatus();
}

absl::Status Plan::CheckMemory(const Limits& limits) {
  // The request's own tensors, then everything the run may allocate.
  int64_t bytes = 0;
  for (int id : sources_) {
    bytes = SaturatingAdd(bytes, values_[id].meta.num_bytes());
  }
  for (const PlannedNode& node : nodes_) {
    for (int out : node.outputs) {
      bytes = SaturatingAdd(bytes, values_[out].meta.num_bytes());
      // A gradient for each output, and a temporary while it accumulates.
      if (node.runs_backward) {
        bytes = SaturatingAdd(bytes, 2 * values_[out].meta.num_bytes());
      }
    }
    bytes = SaturatingAdd(bytes, node.op->ExtraBytes());
  }
  for (int id : wrt_)
    bytes = SaturatingAdd(bytes, values_[id].meta.num_bytes());
  peak_bytes_bound_ = bytes;
  if (bytes > limits.max_request_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request would allocate up to ", bytes,
        " bytes for its inputs, outputs and gradients, over the limit of ",
        limits.max_request_bytes));
  }
  return absl::OkStatus();
}

}  // namespace gradserve
