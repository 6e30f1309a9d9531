#include "core/executor.h"

#include <algorithm>
#include <new>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/dnnl_util.h"
#include "core/status_macros.h"

namespace gradserve {

// What one node sees of a run, shared by its two pass contexts. Tensors are
// as the op takes them: plain unless it handles layouts.
struct NodeRunState {
  const Plan& plan;
  const PlannedNode& node;
  std::vector<Tensor>& values;  // the run's values, where outputs go
  std::vector<Tensor>& saved;
  uint64_t seed;
  std::vector<Tensor> inputs;   // undefined where left out (or not saved)
  std::vector<Tensor> outputs;  // backward: the saved outputs
  std::vector<Tensor> grads;    // backward: dL/d(output j), or undefined
  // Forward: state updates per input. Backward: gradients per input.
  std::vector<Tensor> per_input;
};

namespace {

const Tensor& Undefined() {
  static const Tensor* const kUndefined = new Tensor();
  return *kUndefined;
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

template <typename T>
void AddLoop(T* acc, const T* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += g[i];
}

absl::Status CheckMeta(const PlannedNode& node, absl::string_view what,
                       const std::string& value, const Tensor& t,
                       const TensorMeta& expected) {
  if (t.defined() && t.meta() == expected) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("node '", node.def->name, "' (", node.def->op, ") produced ",
                   t.defined() ? t.meta().ToString() : "nothing", " for ", what,
                   " '", value, "', expected ", expected.ToString()));
}

class Run {
 public:
  Run(const Plan& plan, const RunArgs& args)
      : plan_(plan),
        args_(args),
        values_(plan.values().size()),
        grads_(plan.values().size()),
        saved_(plan.nodes().size()),
        plain_(plan.values().size()) {}

  absl::StatusOr<RunResult> Go() {
    RETURN_IF_ERROR(BindSources());
    RETURN_IF_ERROR(Forward());
    for (int id : plan_.fetch_values()) {
      result_.outputs[plan_.values()[id].name] = Plain(values_[id], dnnl_);
    }
    if (plan_.has_backward()) RETURN_IF_ERROR(Backward());
    return std::move(result_);
  }

 private:
  absl::Status CheckCancelled() {
    return args_.check_cancelled ? args_.check_cancelled() : absl::OkStatus();
  }

  absl::Status BindSources() {
    const GraphDef& g = plan_.graph();
    for (int id : plan_.source_values()) {
      const ValueInfo& v = plan_.values()[id];
      const Tensor* t = nullptr;
      if (auto it = args_.feeds.find(v.name); it != args_.feeds.end()) {
        t = &it->second;
      } else if (auto p = g.parameters.find(v.name); p != g.parameters.end()) {
        t = &p->second;
      } else if (auto b = g.buffers.find(v.name); b != g.buffers.end()) {
        t = &b->second;
      }
      if (t == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph input '", v.name, "' is not fed"));
      }
      Tensor value = t->CastFloat(plan_.float_dtype());
      if (value.meta() != v.meta) {
        return absl::InvalidArgumentError(absl::StrCat(
            "value '", v.name, "' was planned as ", v.meta.ToString(),
            " but is ", value.meta().ToString()));
      }
      values_[id] = std::move(value);
    }
    return absl::OkStatus();
  }

  absl::Status Forward() {
    const std::vector<PlannedNode>& nodes = plan_.nodes();
    const std::vector<ValueInfo>& infos = plan_.values();
    // A value is kept past its last forward reader when it is fetched or a
    // backward pass reads it.
    std::vector<int> readers(infos.size(), 0);
    for (const PlannedNode& node : nodes) {
      for (int in : node.inputs) {
        if (in >= 0) ++readers[in];
      }
    }
    backward_readers_.assign(infos.size(), 0);
    for (const PlannedNode& node : nodes) {
      if (!node.runs_backward) continue;
      for (int i : node.saves.inputs) {
        if (node.inputs[i] >= 0) ++backward_readers_[node.inputs[i]];
      }
      for (int j : node.saves.outputs) ++backward_readers_[node.outputs[j]];
    }
    std::vector<bool> keep(infos.size(), false);
    for (int id : plan_.fetch_values()) keep[id] = true;

    for (size_t n = 0; n < nodes.size(); ++n) {
      RETURN_IF_ERROR(CheckCancelled());
      const PlannedNode& node = nodes[n];
      NodeRunState state{plan_,
                         node,
                         values_,
                         saved_[n],
                         SplitMix64(args_.seed ^ Fnv1a(node.def->name)),
                         Present(node, node.inputs),
                         {},
                         {},
                         std::vector<Tensor>(node.inputs.size())};
      ForwardContext ctx(state, dnnl_);
      RETURN_IF_ERROR(node.op->Forward(ctx));
      for (size_t j = 0; j < node.outputs.size(); ++j) {
        int out = node.outputs[j];
        RETURN_IF_ERROR(CheckMeta(node, "output", infos[out].name, values_[out],
                                  infos[out].meta));
        if (readers[out] == 0 && !keep[out] && backward_readers_[out] == 0) {
          Release(out);
        }
      }
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        int in = node.inputs[i];
        if (in < 0) continue;
        const Tensor& update = state.per_input[i];
        if (update.defined() && infos[in].kind == ValueKind::kBuffer) {
          RETURN_IF_ERROR(CheckMeta(node, "state update of", infos[in].name,
                                    update, infos[in].meta));
          result_.buffers[infos[in].name] = Plain(update, dnnl_);
        }
        if (--readers[in] == 0 && !keep[in] && backward_readers_[in] == 0) {
          Release(in);
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status SeedGradients() {
    const std::vector<ValueInfo>& infos = plan_.values();
    if (int loss = plan_.loss_value(); loss >= 0) {
      Tensor one = Tensor::Empty(infos[loss].meta);
      if (one.dtype() == DType::kFloat32) {
        one.data<float>()[0] = 1.0f;
      } else {
        one.data<double>()[0] = 1.0;
      }
      grads_[loss] = std::move(one);
    }
    for (const auto& [name, seed] : args_.seeds) {
      int id = plan_.ValueId(name);
      const ValueInfo& v = infos[id];
      Tensor g = seed.CastFloat(plan_.float_dtype());
      if (g.meta() != v.meta) {
        return absl::InvalidArgumentError(absl::StrCat(
            "output_gradients '", name, "' must be ", v.meta.ToString(),
            " like the value it seeds, got ", seed.meta().ToString()));
      }
      Accumulate(grads_[id], g);
    }
    return absl::OkStatus();
  }

  absl::Status Backward() {
    RETURN_IF_ERROR(SeedGradients());
    const std::vector<PlannedNode>& nodes = plan_.nodes();
    const std::vector<ValueInfo>& infos = plan_.values();
    std::vector<bool> is_wrt(infos.size(), false);
    for (int id : plan_.wrt_values()) is_wrt[id] = true;

    for (int n = static_cast<int>(nodes.size()) - 1; n >= 0; --n) {
      const PlannedNode& node = nodes[n];
      if (!node.runs_backward) continue;
      RETURN_IF_ERROR(CheckCancelled());
      std::vector<int> grad_ids;
      bool any = false;
      for (int out : node.outputs) {
        grad_ids.push_back(out);
        any = any || grads_[out].defined();
      }
      if (any) {
        // Only what the op declared saved is still there to present.
        std::vector<int> saved_inputs(node.inputs.size(), -1);
        for (int i : node.saves.inputs) saved_inputs[i] = node.inputs[i];
        std::vector<int> saved_outputs(node.outputs.size(), -1);
        for (int j : node.saves.outputs) saved_outputs[j] = node.outputs[j];
        NodeRunState state{plan_,
                           node,
                           values_,
                           saved_[n],
                           0,
                           Present(node, saved_inputs),
                           Present(node, saved_outputs),
                           Present(node, grad_ids, grads_),
                           std::vector<Tensor>(node.inputs.size())};
        BackwardContext ctx(state, dnnl_);
        RETURN_IF_ERROR(node.op->Backward(ctx));
        for (size_t i = 0; i < node.inputs.size(); ++i) {
          const Tensor& g = state.per_input[i];
          int in = node.inputs[i];
          if (!g.defined()) continue;
          if (in < 0 || !node.needs_grad[i]) {
            return absl::InternalError(absl::StrCat(
                "node '", node.def->name, "' set a gradient for input ", i,
                " that was not asked for"));
          }
          RETURN_IF_ERROR(CheckMeta(node, "the gradient of", infos[in].name, g,
                                    infos[in].meta));
          Accumulate(grads_[in], g);
        }
      }
      // Every consumer of this node's outputs ran before it: their
      // gradients are complete, and the node's saved state is spent.
      for (int out : node.outputs) {
        if (!is_wrt[out]) grads_[out] = Tensor();
      }
      saved_[n].clear();
      auto release = [&](int id) {
        if (id >= 0 && --backward_readers_[id] == 0) Release(id);
      };
      for (int i : node.saves.inputs) release(node.inputs[i]);
      for (int j : node.saves.outputs) release(node.outputs[j]);
    }
    for (int id : plan_.wrt_values()) {
      const Tensor& g = grads_[id];
      result_.gradients[infos[id].name] =
          g.defined() ? Plain(g, dnnl_) : Tensor::Zeros(infos[id].meta);
    }
    return absl::OkStatus();
  }

  static DnnlRunner& ThreadRunner() {
    thread_local DnnlRunner runner;
    return runner;
  }

  // values_[id] in plain layout, reordered once and kept while the value is.
  const Tensor& PlainValue(int id) {
    if (values_[id].is_plain()) return values_[id];
    if (!plain_[id].defined()) plain_[id] = Plain(values_[id], dnnl_);
    return plain_[id];
  }

  // The tensors of `ids` (-1: none) as `node`'s op takes them, from
  // `from` (the values by default).
  std::vector<Tensor> Present(const PlannedNode& node,
                              const std::vector<int>& ids,
                              const std::vector<Tensor>* from = nullptr) {
    std::vector<Tensor> out(ids.size());
    const bool layouts = node.op->HandlesLayouts();
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] < 0) continue;
      if (from != nullptr) {
        const Tensor& t = (*from)[ids[k]];
        out[k] = layouts || !t.defined() ? t : Plain(t, dnnl_);
      } else {
        out[k] = layouts ? values_[ids[k]] : PlainValue(ids[k]);
      }
    }
    return out;
  }
  std::vector<Tensor> Present(const PlannedNode& node,
                              const std::vector<int>& ids,
                              const std::vector<Tensor>& from) {
    return Present(node, ids, &from);
  }

  void Release(int id) {
    values_[id] = Tensor();
    plain_[id] = Tensor();
  }

  // acc += g, in place when acc owns its storage. Tensors of different
  // layouts are added in plain layout.
  void Accumulate(Tensor& acc, const Tensor& g) {
    if (!acc.defined()) {
      acc = g;
      return;
    }
    Tensor addend = g;
    if ((!acc.is_plain() || !g.is_plain()) && DescOf(acc) != DescOf(g)) {
      acc = Plain(acc, dnnl_);
      addend = Plain(g, dnnl_);
    }
    // Same layout: element-for-element over the whole storage (padding
    // included, which stays zero).
    const int64_t n =
        static_cast<int64_t>(acc.storage_bytes() / DTypeSize(acc.dtype()));
    if (!acc.unique()) {
      Tensor sum = acc.Clone();
      acc = std::move(sum);
    }
    if (acc.dtype() == DType::kFloat32) {
      AddLoop(acc.data<float>(), addend.data<float>(), n);
    } else {
      AddLoop(acc.data<double>(), addend.data<double>(), n);
    }
  }

  const Plan& plan_;
  const RunArgs& args_;
  std::vector<Tensor> values_;
  std::vector<Tensor> grads_;
  std::vector<std::vector<Tensor>> saved_;
  std::vector<Tensor> plain_;  // plain copies of blocked values
  std::vector<int> backward_readers_;
  DnnlRunner& dnnl_ = ThreadRunner();
  RunResult result_;
};

}  // namespace

absl::StatusOr<RunResult> Execute(const Plan& plan, const RunArgs& args) {
  try {
    return Run(plan, args).Go();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "out of memory while computing the request");
  } catch (const dnnl::error& e) {
    return DnnlErrorToStatus(e, "(executor)");
  }
}

// ForwardContext and BackwardContext read the run through NodeRunState.

int ForwardContext::num_inputs() const {
  return static_cast<int>(state_.node.inputs.size());
}
bool ForwardContext::has_input(int i) const {
  return i < num_inputs() && state_.node.inputs[i] >= 0;
}
const Tensor& ForwardContext::input(int i) const {
  return i < num_inputs() ? state_.inputs[i] : Undefined();
}
int ForwardContext::num_outputs() const {
  return static_cast<int>(state_.node.outputs.size());
}
const TensorMeta& ForwardContext::output_meta(int j) const {
  return state_.node.op->outputs()[j];
}
Tensor& ForwardContext::AllocateOutput(int j) {
  Tensor& out = state_.values[state_.node.outputs[j]];
  out = Tensor::Empty(output_meta(j));
  return out;
}
void ForwardContext::SetOutput(int j, Tensor t) {
  state_.values[state_.node.outputs[j]] = std::move(t);
}
void ForwardContext::Save(Tensor t) { state_.saved.push_back(std::move(t)); }
void ForwardContext::UpdateState(int input, Tensor t) {
  state_.per_input[input] = std::move(t);
}
bool ForwardContext::backward_will_run() const {
  return state_.node.runs_backward;
}
Mode ForwardContext::mode() const { return state_.plan.mode(); }
uint64_t ForwardContext::seed() const { return state_.seed; }

int BackwardContext::num_inputs() const {
  return static_cast<int>(state_.node.inputs.size());
}
bool BackwardContext::has_input(int i) const {
  return i < num_inputs() && state_.node.inputs[i] >= 0;
}
const Tensor& BackwardContext::input(int i) const {
  return i < num_inputs() ? state_.inputs[i] : Undefined();
}
const Tensor& BackwardContext::output(int j) const { return state_.outputs[j]; }
const std::vector<Tensor>& BackwardContext::saved() const {
  return state_.saved;
}
const Tensor& BackwardContext::grad_output(int j) const {
  return state_.grads[j];
}
bool BackwardContext::has_grad_output(int j) const {
  return state_.grads[j].defined();
}
bool BackwardContext::needs_grad(int i) const {
  return i < num_inputs() && state_.node.needs_grad[i];
}
void BackwardContext::SetGradInput(int i, Tensor grad) {
  state_.per_input[i] = std::move(grad);
}
Mode BackwardContext::mode() const { return state_.plan.mode(); }

}  // namespace gradserve
