// The op interface: each op file defines a schema (inputs, outputs,
// attributes), a factory that checks input metas and infers output metas, and
// an Op with Forward and Backward side by side, plus one REGISTER_OP line.
#ifndef GRADSERVE_CORE_OP_H_
#define GRADSERVE_CORE_OP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/attributes.h"
#include "core/tensor.h"

namespace gradserve {

enum class Mode { kTrain, kEval };

struct InputSpec {
  std::string name;
  bool optional = false;
  bool variadic = false;  // the last input may take one or more values
};

// Everything an op's factory sees about one node.
class OpConfig {
 public:
  OpConfig(absl::string_view node, absl::string_view op,
           const Attributes& attrs, std::vector<std::string> input_names,
           std::vector<std::string> input_values,
           std::vector<std::optional<TensorMeta>> inputs, int num_outputs,
           Mode mode, DType float_dtype)
      : node_(node),
        op_(op),
        attrs_(attrs),
        input_names_(std::move(input_names)),
        input_values_(std::move(input_values)),
        inputs_(std::move(inputs)),
        num_outputs_(num_outputs),
        mode_(mode),
        float_dtype_(float_dtype) {}

  absl::string_view node() const { return node_; }
  const Attributes& attrs() const { return attrs_; }
  // This node with other input metas: an adapter (Unbatched) builds the op
  // it wraps with them.
  OpConfig WithInputs(std::vector<std::optional<TensorMeta>> inputs) const {
    OpConfig c = *this;
    c.inputs_ = std::move(inputs);
    return c;
  }
  const std::vector<std::optional<TensorMeta>>& inputs() const {
    return inputs_;
  }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  bool has_input(int i) const { return i < num_inputs() && inputs_[i]; }
  const TensorMeta& input(int i) const { return *inputs_[i]; }
  const Shape& shape(int i) const { return inputs_[i]->shape; }
  int num_outputs() const { return num_outputs_; }
  Mode mode() const { return mode_; }
  // The element type floating values have in this run (float32, or float64
  // on the reference path).
  DType float_dtype() const { return float_dtype_; }

  // INVALID_ARGUMENT "node 'fc1' (Linear): <parts...>".
  template <typename... Args>
  absl::Status Error(const Args&... parts) const {
    return absl::InvalidArgumentError(
        absl::StrCat("node '", node_, "' (", op_, "): ", parts...));
  }
  // UNIMPLEMENTED, worded like Error().
  template <typename... Args>
  absl::Status Unsupported(const Args&... parts) const {
    return absl::UnimplementedError(
        absl::StrCat("node '", node_, "' (", op_, "): ", parts...));
  }
  // RESOURCE_EXHAUSTED, worded like Error(): a size derived from the inputs
  // (a dim, an element count) that int64 cannot hold.
  template <typename... Args>
  absl::Status TooLarge(const Args&... parts) const {
    return absl::ResourceExhaustedError(
        absl::StrCat("node '", node_, "' (", op_, "): ", parts...));
  }
  // "input 'weight' (value 'W1')".
  std::string Describe(int i) const;

  // Common checks; each error names the node, the input and what came.
  absl::Status ExpectFloat(int i) const;  // floating, of float_dtype()
  absl::Status ExpectInt64(int i) const;
  absl::Status ExpectRank(int i, int rank) const;
  absl::Status ExpectRankBetween(int i, int min_rank, int max_rank) const;
  absl::Status ExpectShape(int i, const Shape& shape) const;
  // An axis in [-rank, rank), normalised to [0, rank).
  absl::StatusOr<int> NormalizeAxis(absl::string_view attr, int64_t axis,
                                    int rank) const;

 private:
  absl::string_view node_;
  absl::string_view op_;
  const Attributes& attrs_;
  std::vector<std::string> input_names_;
  std::vector<std::string> input_values_;
  std::vector<std::optional<TensorMeta>> inputs_;
  int num_outputs_;
  Mode mode_;
  DType float_dtype_;
};

// Which inputs and outputs an op reads in Backward. The executor keeps these
// values after the forward pass and frees the rest.
struct SavedValues {
  std::vector<int> inputs;
  std::vector<int> outputs;
};

// Per-run state the executor hands an op; the two passes get the views below.
struct NodeRunState;
class DnnlRunner;

class ForwardContext {
 public:
  ForwardContext(NodeRunState& state, DnnlRunner& dnnl)
      : state_(state), dnnl_(dnnl) {}

  int num_inputs() const;
  bool has_input(int i) const;
  // The value of input i; an undefined Tensor for a left-out optional input.
  const Tensor& input(int i) const;
  const TensorMeta& output_meta(int j) const;
  int num_outputs() const;
  // Allocates output j with its inferred dtype and shape.
  Tensor& AllocateOutput(int j);
  // Sets output j to a tensor (a view of an input, say) of the inferred meta.
  void SetOutput(int j, Tensor t);
  // Keeps a tensor the op needs in Backward (a mask, statistics, a
  // workspace); freed after this node's backward pass.
  void Save(Tensor t);
  // A new value for a state input (BatchNorm running statistics); the
  // executor returns it when the input is a graph buffer.
  void UpdateState(int input, Tensor t);
  // Whether Backward will run for this node in this request.
  bool backward_will_run() const;
  Mode mode() const;
  // The request seed mixed with the node's name: each node draws its own
  // stream, the same for the same request seed.
  uint64_t seed() const;
  DnnlRunner& dnnl() { return dnnl_; }

  // For adapters that run a wrapped op on views (Unbatched): input i as the
  // wrapped op is to see it, and output j as it left it.
  void ReplaceInput(int i, Tensor t);
  Tensor& mutable_output(int j);

 private:
  NodeRunState& state_;
  DnnlRunner& dnnl_;
};

class BackwardContext {
 public:
  BackwardContext(NodeRunState& state, DnnlRunner& dnnl)
      : state_(state), dnnl_(dnnl) {}

  int num_inputs() const;
  bool has_input(int i) const;
  int num_outputs() const;
  // Inputs and outputs named in SavedValues; others are undefined here.
  const Tensor& input(int i) const;
  const Tensor& output(int j) const;
  const std::vector<Tensor>& saved() const;
  // dL/d(output j), or an undefined Tensor when nothing flows into it.
  const Tensor& grad_output(int j) const;
  bool has_grad_output(int j) const;
  // Whether the request needs dL/d(input i); skip the work when it does not.
  bool needs_grad(int i) const;
  // dL/d(input i), of input i's dtype and shape. Leaving a needed gradient
  // unset means it is zero.
  void SetGradInput(int i, Tensor grad);
  Mode mode() const;
  DnnlRunner& dnnl() { return dnnl_; }

  // For adapters (Unbatched): what the wrapped op is to see, and the
  // gradient it set for input i.
  void ReplaceInput(int i, Tensor t);
  void ReplaceOutput(int j, Tensor t);
  void ReplaceGradOutput(int j, Tensor t);
  Tensor& mutable_grad_input(int i);

 private:
  NodeRunState& state_;
  DnnlRunner& dnnl_;
};

// Facts about a request an op may use when it builds its primitives.
struct PrepareInfo {
  bool backward_will_run = false;
  std::vector<bool> needs_grad;  // per input
  // The layout each input will arrive in (null: plain row-major), as its
  // producer announced with OutputLayout(). Only ops that handle layouts
  // see anything but plain.
  std::vector<std::shared_ptr<const Layout>> input_layouts;
};

class Op {
 public:
  virtual ~Op() = default;

  const std::vector<TensorMeta>& outputs() const { return outputs_; }
  // The node this op computes, for messages; set by the planner.
  const std::string& node() const { return node_; }
  void set_node(std::string node) { node_ = std::move(node); }

  virtual int64_t ForwardFlops() const { return 0; }
  virtual int64_t BackwardFlops() const { return MulSat(2, ForwardFlops()); }
  // Bytes the op allocates beyond its outputs (saved tensors, workspaces),
  // counted against the request's memory limit.
  virtual int64_t ExtraBytes() const { return 0; }

  // Called once before the first Forward of a planned request; ops build
  // their oneDNN primitives here.
  virtual absl::Status Prepare(const PrepareInfo& info) {
    return absl::OkStatus();
  }
  virtual SavedValues Saves(const std::vector<bool>& needs_grad) const = 0;
  // Whether the op takes tensors in oneDNN's blocked layouts (inputs, saved
  // values, output gradients) and may produce them. Other ops see only
  // plain row-major tensors: the executor reorders for them.
  virtual bool HandlesLayouts() const { return false; }
  // The layout output j will have (null: plain); known after Prepare. An
  // op must produce what it announces.
  virtual std::shared_ptr<const Layout> OutputLayout(int j) const {
    return nullptr;
  }
  virtual absl::Status Forward(ForwardContext& ctx) const = 0;
  virtual absl::Status Backward(BackwardContext& ctx) const = 0;

 protected:
  std::vector<TensorMeta> outputs_;
  std::string node_;
};

using OpFactory =
    std::function<absl::StatusOr<std::unique_ptr<Op>>(const OpConfig&)>;

struct OpSchema {
  std::string name;
  std::string description;
  std::vector<InputSpec> inputs;
  // Output names; the first `min_outputs` are required of a node.
  std::vector<std::string> outputs = {"y"};
  int min_outputs = 1;
  // The last output repeats: a node may define any number of it (Split).
  bool variadic_outputs = false;
  std::vector<AttrSpec> attrs;
  OpFactory create;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OP_H_
