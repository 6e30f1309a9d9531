// Planning: a graph is validated, sorted, pruned to what a request needs,
// shape-inferred op by op, analysed for which values need gradients, checked
// against the limits, and its ops prepared.
#ifndef GRADSERVE_CORE_PLAN_H_
#define GRADSERVE_CORE_PLAN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/graph.h"
#include "core/op.h"

namespace gradserve {

enum class ValueKind { kInput, kParameter, kBuffer, kNodeOutput };

struct ValueInfo {
  std::string name;
  ValueKind kind;
  TensorMeta meta;    // known once the value's producer is planned
  int producer = -1;  // index into Plan::nodes() for node outputs
};

struct PlannedNode {
  const NodeDef* def;
  const OpSchema* schema;
  Attributes attrs;
  std::unique_ptr<Op> op;
  std::vector<int> inputs;   // value ids; -1 = optional input left out
  std::vector<int> outputs;  // value ids
  // Filled by gradient analysis:
  bool runs_backward = false;
  std::vector<bool> needs_grad;  // per input
  SavedValues saves;
};

struct PlanRequest {
  // Dtype and shape of graph inputs, and of parameters or buffers a request
  // overrides; floating types are those of `float_dtype`.
  absl::flat_hash_map<std::string, TensorMeta> given;
  // Values to return.
  std::vector<std::string> fetch;
  // A scalar value to differentiate, or empty.
  std::string loss;
  // Values given a gradient seed dL/dv.
  std::vector<std::string> seeded;
  // Values whose gradients are returned; empty with a loss or seeds = all
  // parameters.
  std::vector<std::string> wrt;
  Mode mode = Mode::kTrain;
  DType float_dtype = DType::kFloat32;
  // Describe: plan every node and only infer shapes; no primitives are built.
  bool describe_only = false;
};

class Plan {
 public:
  // `graph` must outlive the plan.
  static absl::StatusOr<std::unique_ptr<Plan>> Build(const GraphDef& graph,
                                                     const PlanRequest& request,
                                                     const Limits& limits);

  const GraphDef& graph() const { return *graph_; }
  Mode mode() const { return mode_; }
  DType float_dtype() const { return float_dtype_; }
  // Nodes in execution order, pruned to what the request needs.
  const std::vector<PlannedNode>& nodes() const { return nodes_; }
  const std::vector<ValueInfo>& values() const { return values_; }
  int ValueId(const std::string& name) const;  // -1 when unknown
  // Graph inputs, parameters and buffers the nodes read.
  const std::vector<int>& source_values() const { return sources_; }
  const std::vector<int>& fetch_values() const { return fetch_; }
  int loss_value() const { return loss_; }  // -1 when none
  const std::vector<int>& grad_sources() const { return grad_sources_; }
  const std::vector<int>& wrt_values() const { return wrt_; }
  bool has_backward() const { return !grad_sources_.empty(); }
  // Bytes the request may allocate at most (outputs, gradients, extras).
  int64_t peak_bytes_bound() const { return peak_bytes_bound_; }

 private:
  absl::Status IndexValues(const PlanRequest& request, const Limits& limits);
  absl::Status SortAndPrune(const PlanRequest& request);
  absl::Status InferNodes(const PlanRequest& request, const Limits& limits);
  absl::Status AnalyseGradients(const PlanRequest& request);
  absl::Status CheckMemory(const Limits& limits);
  absl::StatusOr<int> LookUp(const std::string& name,
                             absl::string_view what) const;

  const GraphDef* graph_ = nullptr;
  Mode mode_ = Mode::kTrain;
  DType float_dtype_ = DType::kFloat32;
  std::vector<ValueInfo> values_;
  absl::flat_hash_map<std::string, int> value_ids_;
  std::vector<PlannedNode> nodes_;
  std::vector<int> sources_;
  std::vector<int> fetch_;
  int loss_ = -1;
  std::vector<int> grad_sources_;
  std::vector<int> wrt_;
  int64_t peak_bytes_bound_ = 0;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_PLAN_H_
