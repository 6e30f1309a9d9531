// A program: one graph index compiled for one kind of request. Pruned to
// what the request needs (fetch, loss, gradient seeds, wrt), shapes
// inferred, gradients analysed (which inputs of which nodes need one, what
// each op saves), the points where each value can be freed fixed, the
// memory a run may need bounded, and every op's primitives created.
// Immutable once compiled: any number of threads may run it at once, bound
// to different values (core/exec).
#ifndef GRADSERVE_CORE_COMPILE_PROGRAM_H_
#define GRADSERVE_CORE_COMPILE_PROGRAM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/compile/graph_index.h"
#include "core/op.h"

namespace gradserve {

// What a program is compiled for. Two requests with equal ProgramKey()s get
// the same program; parameter values are never part of it.
struct ProgramRequest {
  // Dtype and shape of the values a request feeds: graph inputs, and the
  // parameters or buffers it overrides (others have the graph's).
  absl::flat_hash_map<std::string, TensorMeta> given;
  std::vector<std::string> fetch;   // empty = graph.outputs
  std::string loss;                 // a scalar to differentiate, or empty
  std::vector<std::string> seeded;  // values given a gradient seed dL/dv
  // Forward now, Backward later: every fetched floating value may be seeded
  // when the backward pass runs.
  bool seed_fetched = false;
  // Gradients to return; empty with a loss or seeds = all parameters.
  std::vector<std::string> wrt;
  // Training: wrt lists candidates, and those no gradient source depends on
  // are dropped rather than refused (an optimizer skips them, as torch skips
  // parameters whose .grad is None).
  bool drop_unreached_wrt = false;
  Mode mode = Mode::kTrain;
  DType float_dtype = DType::kFloat32;
  // Describe: every node, shapes only (no pruning, gradients or primitives).
  bool describe_only = false;
};

// The request's part of a program-cache key (the graph's is its index key).
std::string ProgramKey(const ProgramRequest& request);

struct ProgramNode {
  const IndexedNode* node = nullptr;  // in the program's index
  std::unique_ptr<Op> op;
  bool runs_backward = false;
  int time_slot = -1;            // the op type's slot in OpTimes
  std::vector<bool> needs_grad;  // per input position
  SavedValues saves;
  // Values no later step reads: freed after this node's forward, and after
  // its backward pass.
  std::vector<int> free_after_forward;
  std::vector<int> free_after_backward;
  // Too little work to share: the forward (backward) pass of this node runs
  // on the calling thread alone (see Program::Prepare).
  bool forward_alone = false;
  bool backward_alone = false;
};

class Program {
 public:
  static absl::StatusOr<std::shared_ptr<const Program>> Compile(
      std::shared_ptr<const GraphIndex> index, const ProgramRequest& request,
      const Limits& limits);

  const GraphIndex& index() const { return *index_; }
  Mode mode() const { return mode_; }
  DType float_dtype() const { return float_dtype_; }
  // Nodes in execution order.
  const std::vector<ProgramNode>& nodes() const { return nodes_; }
  // Metas by value id (the index's ids); known for the values the program
  // touches.
  const TensorMeta& meta(int value) const { return metas_[value]; }
  size_t num_values() const { return metas_.size(); }
  const std::string& name(int value) const {
    return index_->values()[value].name;
  }
  ValueKind kind(int value) const { return index_->values()[value].kind; }
  // Position in nodes() of a node output's producer; -1 for sources.
  int producer(int value) const { return producers_[value]; }
  int ValueId(absl::string_view name) const { return index_->ValueId(name); }

  // Graph inputs, parameters and buffers a run binds, in first-use order.
  const std::vector<int>& sources() const { return sources_; }
  const std::vector<int>& fetch() const { return fetch_; }
  bool fetched(int value) const { return fetched_[value]; }
  int loss() const { return loss_; }  // -1 when none
  // Values a backward pass may start from (the loss and the seedable ones).
  const std::vector<int>& grad_sources() const { return grad_sources_; }
  bool seedable(int value) const { return seedable_[value]; }
  const std::vector<int>& wrt() const { return wrt_; }
  // The request named no wrt: every parameter, those no gradient source
  // depends on getting zeros.
  bool wrt_all_parameters() const { return wrt_all_parameters_; }
  // reaches[v]: a backward pass started from `sources` depends on v through
  // floating values.
  std::vector<bool> Reaches(const std::vector<int>& sources) const;
  bool has_backward() const { return !grad_sources_.empty(); }
  // Values a backward pass reads (so the forward pass keeps them).
  int backward_reads(int value) const { return backward_reads_[value]; }

  // Most bytes a run may allocate (inputs, outputs, saved values, gradients).
  int64_t peak_bytes_bound() const { return peak_bytes_bound_; }
  // Most bytes a tape holds between its forward and backward passes.
  int64_t saved_bytes_bound() const { return saved_bytes_bound_; }
  // Most bytes the results take (outputs, gradients, updated buffers).
  int64_t result_bytes_bound() const { return result_bytes_bound_; }
  // Memory the compiled program itself holds, estimated (its primitives).
  int64_t bytes() const { return bytes_; }
  // Floating-point operations of a forward and backward run (saturated).
  int64_t flops() const { return flops_; }

 private:
  absl::Status BindRequest(const ProgramRequest& request, const Limits& limits);
  absl::Status Prune(const ProgramRequest& request);
  absl::Status InferShapes(const ProgramRequest& request, const Limits& limits);
  absl::Status AnalyseGradients(const ProgramRequest& request);
  void ScheduleFrees();
  absl::Status CheckMemory(const Limits& limits);
  absl::Status Prepare();
  int64_t NodeBytes(const ProgramNode& pn) const;
  static bool RunsAlone(int64_t flops, int64_t bytes);
  absl::Status KnowSource(int id, const ProgramRequest& request,
                          const Limits& limits);

  std::shared_ptr<const GraphIndex> index_;
  Mode mode_ = Mode::kTrain;
  DType float_dtype_ = DType::kFloat32;
  std::vector<ProgramNode> nodes_;
  std::vector<TensorMeta> metas_;
  std::vector<bool> known_;
  std::vector<int> producers_;
  std::vector<int> sources_;
  std::vector<int> fetch_;
  std::vector<bool> fetched_;
  int loss_ = -1;
  std::vector<int> grad_sources_;
  std::vector<bool> seedable_;
  std::vector<int> wrt_;
  bool wrt_all_parameters_ = false;
  std::vector<int> backward_reads_;
  int64_t peak_bytes_bound_ = 0;
  int64_t saved_bytes_bound_ = 0;
  int64_t result_bytes_bound_ = 0;
  int64_t bytes_ = 0;
  int64_t flops_ = 0;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_COMPILE_PROGRAM_H_
