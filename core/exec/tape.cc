#include "core/exec/tape.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <new>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "core/dnnl_util.h"
#include "core/exec/op_times.h"
#include "core/status_macros.h"

namespace gradserve {

// A node's inputs, outputs or gradients: a handful, kept off the heap.
using NodeTensors = absl::InlinedVector<Tensor, 4>;

// What one node sees of a pass, shared by its two contexts. Tensors are as
// the op takes them: plain unless it handles layouts.
struct NodeRunState {
  const Program& program;
  const ProgramNode& node;
  std::vector<Tensor>& values;  // the tape's values, where outputs go
  std::vector<Tensor>& saved;
  uint64_t seed;
  NodeTensors inputs;   // undefined where left out (or not saved)
  NodeTensors outputs;  // backward: the saved outputs
  NodeTensors grads;    // backward: dL/d(output j), or undefined
  // Forward: state updates per input. Backward: gradients per input.
  NodeTensors per_input;
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

absl::Status CheckMeta(const ProgramNode& pn, absl::string_view what,
                       const std::string& value, const Tensor& t,
                       const TensorMeta& expected) {
  if (t.defined() && t.meta() == expected) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      "node '", pn.node->def.name, "' (", pn.node->def.op, ") produced ",
      t.defined() ? t.meta().ToString() : "nothing", " for ", what, " '", value,
      "', expected ", expected.ToString()));
}

DnnlRunner& ThreadRunner() {
  thread_local DnnlRunner runner;
  return runner;
}

// Runs `f`, turning allocation failures and stray oneDNN errors into
// statuses.
template <typename F>
auto Guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "out of memory while computing the request");
  } catch (const dnnl::error& e) {
    return DnnlErrorToStatus(e, "(executor)");
  }
}

std::vector<int> WrtIds(const Program& program, const BackwardArgs& args) {
  if (args.wrt.empty()) return program.wrt();
  std::vector<int> ids;
  for (const std::string& name : args.wrt) ids.push_back(program.ValueId(name));
  return ids;
}

// As Compute refuses it: a wrt value named (by the backward pass, or by the
// forward pass when the backward pass names none) that nothing this
// backward pass starts from depends on.
absl::Status CheckReached(const Program& p, const BackwardArgs& args) {
  if (args.wrt.empty() && p.wrt_all_parameters()) return absl::OkStatus();
  std::vector<int> sources;
  if (args.from_loss) sources.push_back(p.loss());
  for (const auto& [name, seed] : args.grad_seeds) {
    sources.push_back(p.ValueId(name));
  }
  const std::vector<bool> reaches = p.Reaches(sources);
  for (int id : WrtIds(p, args)) {
    if (!reaches[id]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "wrt '", p.name(id),
          "': neither the loss nor any seeded value depends on it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// Small programs run on the calling thread alone: every oneDNN primitive
// call opens an OpenMP parallel region, and below this many operations
// waking the team's sleeping threads costs more than they save. In larger
// programs, so do the nodes that Program::Prepare found too small to share.
constexpr int64_t kParallelFlops = int64_t{1} << 20;

// The calling thread's OpenMP team size for the life of the object.
class TeamSize {
 public:
  explicit TeamSize(const Program& program)
      : saved_(omp_get_max_threads()),
        team_(program.flops() < kParallelFlops ? 1 : saved_),
        current_(saved_) {
    Set(team_);
  }
  ~TeamSize() { Set(saved_); }

  // Before a node's forward or backward pass.
  void ForNode(bool alone) { Set(alone ? 1 : team_); }

 private:
  void Set(int threads) {
    if (threads == current_) return;
    omp_set_num_threads(threads);
    current_ = threads;
  }

  const int saved_;
  const int team_;
  int current_;
};

// One forward or backward pass over a tape, on the calling thread.
class Tape::Pass {
 public:
  Pass(Tape& tape, const RunControl& control)
      : tape_(tape),
        program_(*tape.program_),
        control_(control),
        team_(*tape.program_) {}

  absl::Status Bind(const TensorMap& feeds, const ValueSet& state) {
    for (int id : program_.sources()) {
      const std::string& name = program_.name(id);
      const Tensor* t = nullptr;
      if (auto it = feeds.find(name); it != feeds.end()) {
        t = &it->second;
      } else if (program_.kind(id) != ValueKind::kInput) {
        t = state.Find(name);
      }
      if (t == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("value '", name, "' is needed but was not given"));
      }
      Tensor value = t->CastFloat(program_.float_dtype());
      if (value.meta() != program_.meta(id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "value '", name, "' was compiled as ", program_.meta(id).ToString(),
            " but is ", value.meta().ToString()));
      }
      tape_.values_[id] = std::move(value);
    }
    return absl::OkStatus();
  }

  absl::Status Forward(ForwardResult* result) {
    const std::vector<ProgramNode>& nodes = program_.nodes();
    for (size_t n = 0; n < nodes.size(); ++n) {
      RETURN_IF_ERROR(CheckCancelled());
      const ProgramNode& pn = nodes[n];
      NodeRunState state{
          program_,
          pn,
          tape_.values_,
          tape_.saved_[n],
          SplitMix64(control_.rng_seed ^ Fnv1a(pn.node->def.name)),
          Present(pn, pn.node->inputs),
          {},
          {},
          NodeTensors(pn.node->inputs.size())};
      ForwardContext ctx(state, dnnl_);
      team_.ForNode(pn.forward_alone);
      RETURN_IF_ERROR(
          Timed(pn, OpTimes::kForward, [&] { return pn.op->Forward(ctx); }));
      for (int out : pn.node->outputs) {
        RETURN_IF_ERROR(CheckMeta(pn, "output", program_.name(out),
                                  tape_.values_[out], program_.meta(out)));
      }
      RETURN_IF_ERROR(TakeStateUpdates(pn, state.per_input, result));
      if (control_.observer != nullptr) ObserveOutputs(static_cast<int>(n));
      for (int id : pn.free_after_forward) Release(id);
    }
    for (int id : program_.fetch()) {
      result->outputs[program_.name(id)] = Plain(tape_.values_[id], dnnl_);
      if (program_.backward_reads(id) == 0) Release(id);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::map<std::string, Tensor>> Backward(
      const BackwardArgs& args) {
    std::vector<Tensor> grads(program_.num_values());
    RETURN_IF_ERROR(SeedGradients(args, grads));
    const std::vector<ProgramNode>& nodes = program_.nodes();
    std::vector<bool> is_wrt(program_.num_values(), false);
    for (int id : program_.wrt()) is_wrt[id] = true;
    for (int n = static_cast<int>(nodes.size()) - 1; n >= 0; --n) {
      const ProgramNode& pn = nodes[n];
      // Every consumer of this node's outputs ran before it: their
      // gradients are complete.
      if (control_.observer != nullptr) ObserveGradients(pn, grads);
      if (!pn.runs_backward) continue;
      RETURN_IF_ERROR(CheckCancelled());
      RETURN_IF_ERROR(BackwardNode(n, grads));
      for (int out : pn.node->outputs) {
        if (!is_wrt[out]) grads[out] = Tensor();
      }
      if (!args.keep) {
        tape_.saved_[n].clear();
        for (int id : pn.free_after_backward) Release(id);
      }
    }
    std::map<std::string, Tensor> gradients;
    for (int id : WrtIds(program_, args)) {
      const Tensor& g = grads[id];
      gradients[program_.name(id)] =
          g.defined() ? Plain(g, dnnl_) : Tensor::Zeros(program_.meta(id));
    }
    return gradients;
  }

 private:
  // Runs one node's pass, adding its wall time to its op type's total.
  template <typename Run>
  static absl::Status Timed(const ProgramNode& pn, OpTimes::Direction direction,
                            Run run) {
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = run();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    OpTimes::Global().Add(
        pn.time_slot, direction,
        std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    return status;
  }

  absl::Status CheckCancelled() {
    return control_.check_cancelled ? control_.check_cancelled()
                                    : absl::OkStatus();
  }

  void ObserveOutputs(int n) {
    for (int out : program_.nodes()[n].node->outputs) {
      control_.observer->OnOutput(program_, n, out,
                                  Plain(tape_.values_[out], dnnl_));
    }
  }

  void ObserveGradients(const ProgramNode& pn,
                        const std::vector<Tensor>& grads) {
    for (int out : pn.node->outputs) {
      if (!grads[out].defined()) continue;
      control_.observer->OnGradient(program_, out, Plain(grads[out], dnnl_));
    }
  }

  // New values of graph buffers (BatchNorm running statistics) go to the
  // results; updates of other inputs are not state and are dropped.
  absl::Status TakeStateUpdates(const ProgramNode& pn,
                                const NodeTensors& updates,
                                ForwardResult* result) {
    for (size_t i = 0; i < updates.size(); ++i) {
      const int in = pn.node->inputs[i];
      if (in < 0 || !updates[i].defined() ||
          program_.kind(in) != ValueKind::kBuffer) {
        continue;
      }
      RETURN_IF_ERROR(CheckMeta(pn, "state update of", program_.name(in),
                                updates[i], program_.meta(in)));
      result->buffers[program_.name(in)] = Plain(updates[i], dnnl_);
    }
    return absl::OkStatus();
  }

  absl::Status SeedGradients(const BackwardArgs& args,
                             std::vector<Tensor>& grads) {
    if (args.from_loss) {
      const int loss = program_.loss();
      Tensor one = Tensor::Empty(program_.meta(loss));
      if (one.dtype() == DType::kFloat32) {
        one.data<float>()[0] = 1.0f;
      } else {
        one.data<double>()[0] = 1.0;
      }
      grads[loss] = std::move(one);
    }
    for (const auto& [name, seed] : args.grad_seeds) {
      Accumulate(grads[program_.ValueId(name)],
                 seed.CastFloat(program_.float_dtype()));
    }
    return absl::OkStatus();
  }

  absl::Status BackwardNode(int n, std::vector<Tensor>& grads) {
    const ProgramNode& pn = program_.nodes()[n];
    const IndexedNode& node = *pn.node;
    bool any = false;
    for (int out : node.outputs) any = any || grads[out].defined();
    if (!any) return absl::OkStatus();
    // Only what the op declared saved is still there to present.
    absl::InlinedVector<int, 8> saved_inputs(node.inputs.size(), -1);
    for (int i : pn.saves.inputs) saved_inputs[i] = node.inputs[i];
    absl::InlinedVector<int, 8> saved_outputs(node.outputs.size(), -1);
    for (int j : pn.saves.outputs) saved_outputs[j] = node.outputs[j];
    NodeRunState state{program_,
                       pn,
                       tape_.values_,
                       tape_.saved_[n],
                       0,
                       Present(pn, saved_inputs),
                       Present(pn, saved_outputs),
                       Present(pn, node.outputs, &grads),
                       NodeTensors(node.inputs.size())};
    BackwardContext ctx(state, dnnl_);
    team_.ForNode(pn.backward_alone);
    RETURN_IF_ERROR(
        Timed(pn, OpTimes::kBackward, [&] { return pn.op->Backward(ctx); }));
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor& g = state.per_input[i];
      const int in = node.inputs[i];
      if (!g.defined()) continue;
      if (in < 0 || !pn.needs_grad[i]) {
        return absl::InternalError(absl::StrCat("node '", node.def.name,
                                                "' set a gradient for input ",
                                                i, " that was not asked for"));
      }
      RETURN_IF_ERROR(CheckMeta(pn, "the gradient of", program_.name(in), g,
                                program_.meta(in)));
      Accumulate(grads[in], g);
    }
    return absl::OkStatus();
  }

  // values_[id] in plain layout, reordered once and kept while the value is.
  const Tensor& PlainValue(int id) {
    const Tensor& v = tape_.values_[id];
    if (v.is_plain()) return v;
    if (!tape_.plain_[id].defined()) tape_.plain_[id] = Plain(v, dnnl_);
    return tape_.plain_[id];
  }

  // The tensors of `ids` (-1: none) as `pn`'s op takes them, from `from`
  // (the tape's values by default).
  NodeTensors Present(const ProgramNode& pn, absl::Span<const int> ids,
                      const std::vector<Tensor>* from = nullptr) {
    NodeTensors out(ids.size());
    const bool layouts = pn.op->HandlesLayouts();
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] < 0) continue;
      if (from != nullptr) {
        const Tensor& t = (*from)[ids[k]];
        out[k] = layouts || !t.defined() ? t : Plain(t, dnnl_);
      } else {
        out[k] = layouts ? tape_.values_[ids[k]] : PlainValue(ids[k]);
      }
    }
    return out;
  }

  void Release(int id) {
    tape_.values_[id] = Tensor();
    tape_.plain_[id] = Tensor();
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
    if (!acc.unique()) acc = acc.Clone();
    if (acc.dtype() == DType::kFloat32) {
      AddLoop(acc.data<float>(), addend.data<float>(), n);
    } else {
      AddLoop(acc.data<double>(), addend.data<double>(), n);
    }
  }

  Tape& tape_;
  const Program& program_;
  const RunControl& control_;
  TeamSize team_;
  DnnlRunner& dnnl_ = ThreadRunner();
};

Tape::Tape(std::shared_ptr<const Program> program)
    : program_(std::move(program)),
      values_(program_->num_values()),
      saved_(program_->nodes().size()),
      plain_(program_->num_values()) {}

Tape::~Tape() = default;

absl::StatusOr<std::unique_ptr<Tape>> Tape::Forward(
    std::shared_ptr<const Program> program, const TensorMap& feeds,
    const ValueSet& state, const RunControl& control, ForwardResult* result) {
  auto tape = std::unique_ptr<Tape>(new Tape(std::move(program)));
  RETURN_IF_ERROR(Guarded([&] {
    Pass pass(*tape, control);
    RETURN_IF_ERROR(pass.Bind(feeds, state));
    return pass.Forward(result);
  }));
  if (!tape->program_->has_backward()) tape->spent_ = true;
  return tape;
}

absl::Status Tape::CheckBackward(const BackwardArgs& args) const {
  const Program& p = *program_;
  if (spent_) {
    return absl::FailedPreconditionError(
        "the forward pass's values were already used by a backward pass");
  }
  if (args.from_loss && p.loss() < 0) {
    return absl::InvalidArgumentError(
        "from_loss: the forward pass named no loss to start from");
  }
  if (!args.from_loss && args.grad_seeds.empty()) {
    return absl::InvalidArgumentError(
        "nothing to differentiate: start from the loss (from_loss) or give "
        "output_gradients");
  }
  for (const auto& [name, seed] : args.grad_seeds) {
    const int id = p.ValueId(name);
    if (id < 0 || !p.seedable(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output_gradients['", name, "']: only values the forward pass ",
          "fetched (floating ones) can be seeded, and '", name,
          "' is not one"));
    }
    if (seed.meta().shape != p.meta(id).shape || !IsFloating(seed.dtype())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output_gradients['", name, "'] must be ", p.meta(id).ToString(),
          " like the value it seeds, got ", seed.meta().ToString()));
    }
  }
  for (const std::string& name : args.wrt) {
    const int id = p.ValueId(name);
    if (id < 0 ||
        std::find(p.wrt().begin(), p.wrt().end(), id) == p.wrt().end()) {
      std::vector<std::string> names;
      for (int w : p.wrt()) names.push_back(p.name(w));
      return absl::InvalidArgumentError(
          absl::StrCat("wrt '", name, "' is not among the forward pass's wrt [",
                       absl::StrJoin(names, ", "), "]"));
    }
  }
  return CheckReached(p, args);
}

absl::StatusOr<std::map<std::string, Tensor>> Tape::Backward(
    const BackwardArgs& args, const RunControl& control) {
  RETURN_IF_ERROR(CheckBackward(args));
  if (!args.keep) spent_ = true;
  return Guarded([&]() -> absl::StatusOr<std::map<std::string, Tensor>> {
    Pass pass(*this, control);
    return pass.Backward(args);
  });
}

int64_t Tape::bytes() const {
  int64_t total = 0;
  for (const auto* tensors : {&values_, &plain_}) {
    for (const Tensor& t : *tensors) {
      total += static_cast<int64_t>(t.storage_bytes());
    }
  }
  for (const auto& node : saved_) {
    for (const Tensor& t : node)
      total += static_cast<int64_t>(t.storage_bytes());
  }
  return total;
}

absl::StatusOr<RunResult> Run(std::shared_ptr<const Program> program,
                              const TensorMap& feeds, const ValueSet& state,
                              const TensorMap& grad_seeds,
                              const RunControl& control) {
  ForwardResult forward;
  ASSIGN_OR_RETURN(std::unique_ptr<Tape> tape,
                   Tape::Forward(program, feeds, state, control, &forward));
  RunResult result;
  result.outputs = std::move(forward.outputs);
  result.buffers = std::move(forward.buffers);
  if (program->has_backward()) {
    BackwardArgs args;
    args.from_loss = program->loss() >= 0;
    args.grad_seeds = grad_seeds;
    ASSIGN_OR_RETURN(result.gradients, tape->Backward(args, control));
  }
  return result;
}

// ForwardContext and BackwardContext read the pass through NodeRunState.

int ForwardContext::num_inputs() const {
  return static_cast<int>(state_.node.node->inputs.size());
}
bool ForwardContext::has_input(int i) const {
  return i >= 0 && i < num_inputs() && state_.node.node->inputs[i] >= 0;
}
const Tensor& ForwardContext::input(int i) const {
  return i >= 0 && i < num_inputs() ? state_.inputs[i] : Undefined();
}
int ForwardContext::num_outputs() const {
  return static_cast<int>(state_.node.node->outputs.size());
}
const TensorMeta& ForwardContext::output_meta(int j) const {
  return state_.node.op->outputs()[j];
}
Tensor& ForwardContext::AllocateOutput(int j) {
  Tensor& out = state_.values[state_.node.node->outputs[j]];
  out = Tensor::Empty(output_meta(j));
  return out;
}
void ForwardContext::SetOutput(int j, Tensor t) {
  state_.values[state_.node.node->outputs[j]] = std::move(t);
}
void ForwardContext::Save(Tensor t) { state_.saved.push_back(std::move(t)); }
void ForwardContext::UpdateState(int input, Tensor t) {
  state_.per_input[input] = std::move(t);
}
bool ForwardContext::backward_will_run() const {
  return state_.node.runs_backward;
}
Mode ForwardContext::mode() const { return state_.program.mode(); }
void ForwardContext::ReplaceInput(int i, Tensor t) {
  state_.inputs[i] = std::move(t);
}
Tensor& ForwardContext::mutable_output(int j) {
  return state_.values[state_.node.node->outputs[j]];
}
uint64_t ForwardContext::seed() const { return state_.seed; }

int BackwardContext::num_inputs() const {
  return static_cast<int>(state_.node.node->inputs.size());
}
bool BackwardContext::has_input(int i) const {
  return i >= 0 && i < num_inputs() && state_.node.node->inputs[i] >= 0;
}
const Tensor& BackwardContext::input(int i) const {
  return i >= 0 && i < num_inputs() ? state_.inputs[i] : Undefined();
}
int BackwardContext::num_outputs() const {
  return static_cast<int>(state_.outputs.size());
}
const Tensor& BackwardContext::output(int j) const {
  return j >= 0 && j < num_outputs() ? state_.outputs[j] : Undefined();
}
const std::vector<Tensor>& BackwardContext::saved() const {
  return state_.saved;
}
const Tensor& BackwardContext::grad_output(int j) const {
  return j >= 0 && j < num_outputs() ? state_.grads[j] : Undefined();
}
bool BackwardContext::has_grad_output(int j) const {
  return grad_output(j).defined();
}
bool BackwardContext::needs_grad(int i) const {
  return i >= 0 && i < num_inputs() && state_.node.needs_grad[i];
}
void BackwardContext::SetGradInput(int i, Tensor grad) {
  state_.per_input[i] = std::move(grad);
}
Mode BackwardContext::mode() const { return state_.program.mode(); }
void BackwardContext::ReplaceInput(int i, Tensor t) {
  state_.inputs[i] = std::move(t);
}
void BackwardContext::ReplaceOutput(int j, Tensor t) {
  state_.outputs[j] = std::move(t);
}
void BackwardContext::ReplaceGradOutput(int j, Tensor t) {
  state_.grads[j] = std::move(t);
}
Tensor& BackwardContext::mutable_grad_input(int i) {
  return state_.per_input[i];
}

}  // namespace gradserve
