#include "core/compile/program.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/compile/key_writer.h"
#include "core/dnnl_util.h"
#include "core/exec/op_times.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

// What a result tensor costs on top of its values: its name and shape.
int64_t ResultOverhead(const std::string& name, const TensorMeta& meta) {
  return 32 + static_cast<int64_t>(name.size()) +
         10 * static_cast<int64_t>(meta.shape.size());
}

// Memory one compiled node holds beyond its primitives, and an estimate of
// what a oneDNN primitive holds (its JIT-generated kernel and descriptors).
constexpr int64_t kNodeBytes = 1024;
constexpr int64_t kPrimitiveBytes = 64 * 1024;

}  // namespace

std::string ProgramKey(const ProgramRequest& request) {
  KeyWriter w;
  std::vector<const std::string*> given;
  for (const auto& [name, meta] : request.given) given.push_back(&name);
  std::sort(given.begin(), given.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  w.Int(static_cast<int64_t>(given.size()));
  for (const std::string* name : given) {
    w.Str(*name).Meta(request.given.at(*name));
  }
  w.Int(static_cast<int64_t>(request.fetch.size()));
  for (const std::string& f : request.fetch) w.Str(f);
  w.Str(request.loss);
  std::vector<std::string> seeded = request.seeded;
  std::sort(seeded.begin(), seeded.end());
  w.Int(static_cast<int64_t>(seeded.size()));
  for (const std::string& s : seeded) w.Str(s);
  w.Int(request.seed_fetched);
  w.Int(request.drop_unreached_wrt);
  w.Int(static_cast<int64_t>(request.wrt.size()));
  for (const std::string& v : request.wrt) w.Str(v);
  w.Int(static_cast<int64_t>(request.mode));
  w.Int(static_cast<int64_t>(request.float_dtype));
  w.Int(request.describe_only);
  return w.Take();
}

absl::StatusOr<std::shared_ptr<const Program>> Program::Compile(
    std::shared_ptr<const GraphIndex> index, const ProgramRequest& request,
    const Limits& limits) {
  auto program = std::shared_ptr<Program>(new Program());
  program->index_ = std::move(index);
  program->mode_ = request.mode;
  program->float_dtype_ = request.float_dtype;
  RETURN_IF_ERROR(program->BindRequest(request, limits));
  RETURN_IF_ERROR(program->Prune(request));
  RETURN_IF_ERROR(program->InferShapes(request, limits));
  if (!request.describe_only) {
    RETURN_IF_ERROR(program->AnalyseGradients(request));
    program->ScheduleFrees();
    RETURN_IF_ERROR(program->CheckMemory(limits));
    RETURN_IF_ERROR(program->Prepare());
  }
  return std::shared_ptr<const Program>(std::move(program));
}

absl::Status Program::BindRequest(const ProgramRequest& request,
                                  const Limits& limits) {
  const size_t num_values = index_->values().size();
  metas_.assign(num_values, TensorMeta{});
  known_.assign(num_values, false);
  producers_.assign(num_values, -1);
  fetched_.assign(num_values, false);
  seedable_.assign(num_values, false);
  backward_reads_.assign(num_values, 0);
  for (const auto& [name, meta] : request.given) {
    const int id = index_->ValueId(name);
    if (id < 0 || index_->values()[id].kind == ValueKind::kNodeOutput) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", name, "' is given a value, but it is ",
          id < 0 ? "not defined by the graph" : "the output of a node",
          "; only graph inputs, parameters and buffers can be fed"));
    }
  }
  return absl::OkStatus();
}

absl::Status Program::Prune(const ProgramRequest& request) {
  const std::vector<IndexedNode>& all = index_->nodes();
  std::vector<bool> needed(all.size(), request.describe_only);
  if (!request.describe_only) {
    std::vector<int> stack;
    auto want = [&](int value) {
      const int producer = index_->values()[value].producer;
      if (producer >= 0 && !needed[producer]) {
        needed[producer] = true;
        stack.push_back(producer);
      }
    };
    auto look_up = [&](const std::string& name, absl::string_view what,
                       std::vector<int>& into) -> absl::Status {
      ASSIGN_OR_RETURN(int id, index_->LookUp(name, what));
      into.push_back(id);
      return absl::OkStatus();
    };
    if (request.fetch.empty()) {
      fetch_ = index_->graph_outputs();
    } else {
      for (const std::string& name : request.fetch) {
        RETURN_IF_ERROR(look_up(name, "fetch", fetch_));
      }
    }
    if (!request.loss.empty()) {
      ASSIGN_OR_RETURN(loss_, index_->LookUp(request.loss, "loss"));
      grad_sources_.push_back(loss_);
      if (std::find(fetch_.begin(), fetch_.end(), loss_) == fetch_.end()) {
        fetch_.push_back(loss_);
      }
    }
    for (const std::string& name : request.seeded) {
      RETURN_IF_ERROR(look_up(name, "output_gradients", grad_sources_));
      seedable_[grad_sources_.back()] = true;
    }
    for (const std::string& name : request.wrt) {
      RETURN_IF_ERROR(look_up(name, "wrt", wrt_));
    }
    if (fetch_.empty() && grad_sources_.empty()) {
      return absl::InvalidArgumentError(
          "nothing to compute: name values in fetch (or graph.outputs), a "
          "loss, or output_gradients");
    }
    for (int id : fetch_) fetched_[id] = true;
    for (int id : fetch_) want(id);
    for (int id : grad_sources_) want(id);
    for (int id : wrt_) want(id);
    while (!stack.empty()) {
      const int n = stack.back();
      stack.pop_back();
      for (int in : all[n].inputs) {
        if (in >= 0) want(in);
      }
    }
  }
  std::vector<int> position(all.size(), -1);
  for (size_t n = 0; n < all.size(); ++n) {
    if (!needed[n]) continue;
    position[n] = static_cast<int>(nodes_.size());
    ProgramNode node;
    node.node = &all[n];
    node.time_slot = OpTimes::Global().Slot(all[n].def.op);
    nodes_.push_back(std::move(node));
  }
  for (size_t id = 0; id < index_->values().size(); ++id) {
    const int producer = index_->values()[id].producer;
    if (producer >= 0) producers_[id] = position[producer];
  }
  return absl::OkStatus();
}

// Graph inputs get their metas from the request; parameters and buffers
// from the graph unless the request overrides them.
absl::Status Program::KnowSource(int id, const ProgramRequest& request,
                                 const Limits& limits) {
  const IndexedValue& v = index_->values()[id];
  if (known_[id] || v.kind == ValueKind::kNodeOutput) return absl::OkStatus();
  auto given = request.given.find(v.name);
  if (given != request.given.end()) {
    metas_[id] = given->second;
  } else if (v.kind == ValueKind::kInput) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph input '", v.name, "' is needed but was not given",
                     request.describe_only ? " (input_shapes)" : " (feeds)"));
  } else {
    metas_[id] = v.declared;
  }
  if (IsFloating(metas_[id].dtype)) metas_[id].dtype = float_dtype_;
  if (v.kind == ValueKind::kParameter && !IsFloating(metas_[id].dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("parameter '", v.name,
                                                   "' must be float32, got ",
                                                   metas_[id].ToString()));
  }
  RETURN_IF_ERROR(CheckedElementCount(metas_[id].shape,
                                      limits.max_tensor_elements,
                                      absl::StrCat("value '", v.name, "'"))
                      .status());
  known_[id] = true;
  sources_.push_back(id);
  return absl::OkStatus();
}

absl::Status Program::InferShapes(const ProgramRequest& request,
                                  const Limits& limits) {
  for (int id : fetch_) RETURN_IF_ERROR(KnowSource(id, request, limits));
  for (int id : grad_sources_) RETURN_IF_ERROR(KnowSource(id, request, limits));
  for (int id : wrt_) RETURN_IF_ERROR(KnowSource(id, request, limits));
  // Gradients for all parameters: also those nothing depends on (zeros).
  const bool differentiates = !grad_sources_.empty() || request.seed_fetched;
  if (request.wrt.empty() && differentiates && !request.describe_only) {
    for (size_t id = 0; id < index_->values().size(); ++id) {
      if (kind(id) != ValueKind::kParameter) continue;
      RETURN_IF_ERROR(KnowSource(static_cast<int>(id), request, limits));
    }
  }
  for (ProgramNode& pn : nodes_) {
    const IndexedNode& node = *pn.node;
    const NodeDef& def = node.def;
    std::vector<std::optional<TensorMeta>> metas;
    for (int in : node.inputs) {
      if (in < 0) {
        metas.push_back(std::nullopt);
        continue;
      }
      RETURN_IF_ERROR(KnowSource(in, request, limits));
      metas.push_back(metas_[in]);
    }
    pn.needs_grad.assign(node.inputs.size(), false);
    OpConfig config(def.name, def.op, node.attrs, node.input_names, def.inputs,
                    std::move(metas), static_cast<int>(def.outputs.size()),
                    mode_, float_dtype_);
    ASSIGN_OR_RETURN(pn.op, node.schema->create(config));
    pn.op->set_node(def.name);
    const std::vector<TensorMeta>& out_metas = pn.op->outputs();
    if (out_metas.size() < def.outputs.size()) {
      return absl::InternalError(
          absl::StrCat("node '", def.name, "': op inferred ", out_metas.size(),
                       " outputs for ", def.outputs.size(), " names"));
    }
    for (size_t j = 0; j < node.outputs.size(); ++j) {
      const int id = node.outputs[j];
      RETURN_IF_ERROR(
          CheckedElementCount(out_metas[j].shape, limits.max_tensor_elements,
                              absl::StrCat("node '", def.name, "' output '",
                                           def.outputs[j], "'"))
              .status());
      metas_[id] = out_metas[j];
      known_[id] = true;
    }
  }
  return absl::OkStatus();
}

std::vector<bool> Program::Reaches(const std::vector<int>& sources) const {
  std::vector<bool> reaches(metas_.size(), false);
  for (int id : sources) reaches[id] = true;
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    bool any = false;
    for (int out : it->node->outputs) any = any || reaches[out];
    if (!any) continue;
    for (int in : it->node->inputs) {
      if (in >= 0 && IsFloating(metas_[in].dtype)) reaches[in] = true;
    }
  }
  return reaches;
}

absl::Status Program::AnalyseGradients(const ProgramRequest& request) {
  if (request.seed_fetched) {
    for (int id : fetch_) {
      if (id == loss_ || seedable_[id] || !IsFloating(metas_[id].dtype)) {
        continue;
      }
      seedable_[id] = true;
      grad_sources_.push_back(id);
    }
  }
  if (grad_sources_.empty()) {
    if (!wrt_.empty()) {
      return absl::InvalidArgumentError(
          "wrt is given but there is nothing to differentiate: name a loss "
          "or output_gradients");
    }
    return absl::OkStatus();
  }
  if (loss_ >= 0) {
    const TensorMeta& loss = metas_[loss_];
    if (!IsFloating(loss.dtype) || loss.num_elements() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("loss '", name(loss_),
                       "' must be a floating scalar, got ", loss.ToString()));
    }
  }
  for (int id : grad_sources_) {
    if (!IsFloating(metas_[id].dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_gradients: '", name(id), "' is ",
                       metas_[id].ToString(), " and has no gradient"));
    }
  }
  const bool all_parameters = wrt_.empty();
  wrt_all_parameters_ = all_parameters;
  if (all_parameters) {
    for (size_t id = 0; id < metas_.size(); ++id) {
      if (kind(id) == ValueKind::kParameter) wrt_.push_back(id);
    }
  }
  for (int id : wrt_) {
    if (!IsFloating(metas_[id].dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("wrt '", name(id), "' is ",
                                                     metas_[id].ToString(),
                                                     " and has no gradient"));
    }
  }
  const std::vector<bool> reaches = Reaches(grad_sources_);
  // from_wrt[v]: v depends on some wrt value through floating values.
  std::vector<bool> from_wrt(metas_.size(), false);
  for (int id : wrt_) from_wrt[id] = true;
  for (ProgramNode& pn : nodes_) {
    bool any = false;
    for (int in : pn.node->inputs) any = any || (in >= 0 && from_wrt[in]);
    if (!any) continue;
    for (int out : pn.node->outputs) {
      if (IsFloating(metas_[out].dtype)) from_wrt[out] = true;
    }
  }
  if (request.drop_unreached_wrt) {
    wrt_.erase(std::remove_if(wrt_.begin(), wrt_.end(),
                              [&](int id) { return !reaches[id]; }),
               wrt_.end());
  } else if (!all_parameters) {
    for (int id : wrt_) {
      if (!reaches[id]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "wrt '", name(id),
            "': neither the loss nor any seeded value depends on it"));
      }
    }
  }
  auto needs = [&](int id) { return id >= 0 && reaches[id] && from_wrt[id]; };
  for (ProgramNode& pn : nodes_) {
    bool any_input = false;
    for (size_t i = 0; i < pn.node->inputs.size(); ++i) {
      pn.needs_grad[i] = needs(pn.node->inputs[i]);
      any_input = any_input || pn.needs_grad[i];
    }
    bool any_output = false;
    for (int out : pn.node->outputs) any_output = any_output || needs(out);
    pn.runs_backward = any_input && any_output;
    if (pn.runs_backward) pn.saves = pn.op->Saves(pn.needs_grad);
  }
  return absl::OkStatus();
}

// A value is freed after its last reader: forward readers first, then the
// backward passes that read it as a saved input or output. Fetched values
// stay until the results are taken.
void Program::ScheduleFrees() {
  std::vector<int> readers(metas_.size(), 0);
  for (const ProgramNode& pn : nodes_) {
    for (int in : pn.node->inputs) {
      if (in >= 0) ++readers[in];
    }
    if (!pn.runs_backward) continue;
    for (int i : pn.saves.inputs) {
      if (pn.node->inputs[i] >= 0) ++backward_reads_[pn.node->inputs[i]];
    }
    for (int j : pn.saves.outputs) ++backward_reads_[pn.node->outputs[j]];
  }
  auto unused = [&](int id) {
    return readers[id] == 0 && !fetched_[id] && backward_reads_[id] == 0;
  };
  for (ProgramNode& pn : nodes_) {
    for (int out : pn.node->outputs) {
      if (unused(out)) pn.free_after_forward.push_back(out);
    }
    for (int in : pn.node->inputs) {
      if (in >= 0 && --readers[in] == 0 && unused(in)) {
        pn.free_after_forward.push_back(in);
      }
    }
  }
  std::vector<int> remaining = backward_reads_;
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    if (!it->runs_backward) continue;
    auto release = [&](int id) {
      if (id >= 0 && --remaining[id] == 0)
        it->free_after_backward.push_back(id);
    };
    for (int i : it->saves.inputs) release(it->node->inputs[i]);
    for (int j : it->saves.outputs) release(it->node->outputs[j]);
  }
}

absl::Status Program::CheckMemory(const Limits& limits) {
  // The request's own tensors, then everything the run may allocate.
  int64_t bytes = 0;
  for (int id : sources_) bytes = SaturatingAdd(bytes, metas_[id].num_bytes());
  const ProgramNode* largest = nullptr;  // named when over the limit
  int64_t largest_bytes = -1;
  for (const ProgramNode& pn : nodes_) {
    int64_t node_bytes = pn.op->ExtraBytes();
    for (int out : pn.node->outputs) {
      // A gradient for each output, and a temporary while it accumulates.
      node_bytes = SaturatingAdd(node_bytes, MulSat(pn.runs_backward ? 3 : 1,
                                                    metas_[out].num_bytes()));
    }
    bytes = SaturatingAdd(bytes, node_bytes);
    if (node_bytes > largest_bytes) {
      largest = &pn;
      largest_bytes = node_bytes;
    }
  }
  for (int id : wrt_) bytes = SaturatingAdd(bytes, metas_[id].num_bytes());
  peak_bytes_bound_ = bytes;
  int64_t saved = 0;
  for (size_t id = 0; id < metas_.size(); ++id) {
    if (backward_reads_[id] > 0 || fetched_[id]) {
      saved = SaturatingAdd(saved, metas_[id].num_bytes());
    }
  }
  for (const ProgramNode& pn : nodes_) {
    if (pn.runs_backward) saved = SaturatingAdd(saved, pn.op->ExtraBytes());
  }
  saved_bytes_bound_ = saved;
  if (bytes > limits.max_request_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request would allocate up to ", bytes,
        " bytes for its inputs, outputs and gradients, over the limit of ",
        limits.max_request_bytes,
        largest == nullptr
            ? std::string()
            : absl::StrCat("; the most, ", largest_bytes, " bytes, for node '",
                           largest->node->def.name, "' (",
                           largest->node->def.op, ")")));
  }
  // The results: fetched values, gradients, and the buffers nodes may update.
  int64_t result = 0;
  auto add_result = [&](int id) {
    result = SaturatingAdd(result,
                           SaturatingAdd(metas_[id].num_bytes(),
                                         ResultOverhead(name(id), metas_[id])));
  };
  for (int id : fetch_) add_result(id);
  for (int id : wrt_) add_result(id);
  if (mode_ == Mode::kTrain) {
    for (int id : sources_) {
      if (kind(id) == ValueKind::kBuffer) add_result(id);
    }
  }
  result_bytes_bound_ = result;
  if (result > limits.max_result_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the results (outputs, gradients and buffers) would take up to ",
        result, " bytes, over the limit of ", limits.max_result_bytes,
        " (the largest message this server sends); fetch less, or ask for "
        "fewer gradients"));
  }
  return absl::OkStatus();
}

// The bytes of a node's inputs and outputs.
int64_t Program::NodeBytes(const ProgramNode& pn) const {
  int64_t bytes = 0;
  for (const auto* ids : {&pn.node->inputs, &pn.node->outputs}) {
    for (int id : *ids) {
      if (id >= 0) bytes = SaturatingAdd(bytes, metas_[id].num_bytes());
    }
  }
  return bytes;
}

// Every oneDNN primitive call opens an OpenMP parallel region, and waking a
// sleeping team (OpenMP's passive wait, the server's default) costs 10-50
// us: a node with less arithmetic than this and less memory to stream than
// this runs faster on one thread. A node's choice depends on its own op and
// shapes only, so it computes the same bits in every program it is part of.
bool Program::RunsAlone(int64_t flops, int64_t bytes) {
  constexpr int64_t kParallelNodeFlops = int64_t{1} << 20;
  constexpr int64_t kParallelNodeBytes = int64_t{256} << 10;
  return flops < kParallelNodeFlops && bytes < kParallelNodeBytes;
}

// In execution order, so that each op knows its inputs' layouts.
absl::Status Program::Prepare() {
  const int64_t primitives_before = PrimitivesCreatedOnThisThread();
  for (ProgramNode& pn : nodes_) {
    PrepareInfo info{pn.runs_backward, pn.needs_grad, {}};
    for (int in : pn.node->inputs) {
      const int producer = in >= 0 ? producers_[in] : -1;
      std::shared_ptr<const Layout> layout;
      if (producer >= 0 && pn.op->HandlesLayouts()) {
        const ProgramNode& p = nodes_[producer];
        const auto& outs = p.node->outputs;
        const auto slot = std::find(outs.begin(), outs.end(), in);
        layout = p.op->OutputLayout(static_cast<int>(slot - outs.begin()));
      }
      info.input_layouts.push_back(std::move(layout));
    }
    RETURN_IF_ERROR(pn.op->Prepare(info));
  }
  for (ProgramNode& pn : nodes_) {
    flops_ = SaturatingAdd(flops_, pn.op->ForwardFlops());
    if (pn.runs_backward)
      flops_ = SaturatingAdd(flops_, pn.op->BackwardFlops());
    const int64_t bytes = NodeBytes(pn);
    pn.forward_alone = RunsAlone(pn.op->ForwardFlops(), bytes);
    pn.backward_alone = RunsAlone(pn.op->BackwardFlops(), bytes);
  }
  const int64_t primitives =
      PrimitivesCreatedOnThisThread() - primitives_before;
  bytes_ = static_cast<int64_t>(nodes_.size()) * kNodeBytes +
           primitives * kPrimitiveBytes;
  return absl::OkStatus();
}

}  // namespace gradserve
