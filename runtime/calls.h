// The runtime's use cases take and return core types: the server decodes a
// wire request into one of these and encodes the result.
#ifndef GRADSERVE_RUNTIME_CALLS_H_
#define GRADSERVE_RUNTIME_CALLS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/analysis/diagnostics.h"
#include "core/analysis/gradient_check.h"
#include "core/compute.h"
#include "core/graph.h"
#include "core/train/optimizer.h"

namespace gradserve::runtime {

// Who calls, and how the call may end early.
struct CallContext {
  std::string tenant;  // the caller's tenant; "" when auth is off
  // The connection the call came on (gRPC's peer, e.g. "ipv4:127.0.0.1:5012"
  // or "unix:"), for state tied to it: shared-memory regions. "" = none.
  std::string connection;
  // The route the client asked new sessions and activations to get (the
  // gradserve-route metadata, which balancers hash on); "" = random.
  std::string route;
  // Polled between nodes: deadline passed, or the client went away.
  std::function<absl::Status()> check_cancelled;
};

// Whose turn a call waits for on the compute pool (fair_queue.h): its
// tenant's when there are tenants (however many connections it opens), else
// its connection's (a client that opens more connections then gets more
// turns: without tokens the server cannot tell clients apart otherwise).
inline std::string SchedulingKey(const CallContext& ctx) {
  return ctx.tenant.empty() ? "connection " + ctx.connection
                            : "tenant " + ctx.tenant;
}

// A request's `model` oneof.
struct ModelSource {
  enum class Kind { kNone, kGraph, kOnnx, kSession };
  Kind kind = Kind::kNone;
  GraphDef graph;
  std::string onnx_model;
  std::string session_id;
};

struct ComputeCall {
  ModelSource model;
  ComputeArgs args;
  bool diagnostics = false;
};

struct ComputeReply {
  RunResult result;
  std::optional<Diagnostics> diagnostics;  // when asked for
};

// CheckGradients, HessianVectorProduct and HessianEigenvalues: `args` as
// Compute takes them (fetch and float_dtype unused).
struct CheckGradientsCall {
  ModelSource model;
  ComputeArgs args;
  GradCheckOptions options;
};

struct HessianVectorProductCall {
  ModelSource model;
  ComputeArgs args;
  TensorMap vector;  // one tensor per wrt value
};

struct HessianEigenvaluesCall {
  ModelSource model;
  ComputeArgs args;
  int64_t k = 0;
};

struct DescribeCall {
  ModelSource model;
  absl::flat_hash_map<std::string, TensorMeta> input_shapes;
};

struct ForwardCall {
  ModelSource model;
  TensorMap feeds;
  std::vector<std::string> fetch;
  std::string loss;
  std::vector<std::string> wrt;
  Mode mode = Mode::kTrain;
  uint64_t seed = 0;
  uint32_t ttl_seconds = 0;  // 0 = the server's default
};

struct ForwardReply {
  std::map<std::string, Tensor> outputs;
  std::map<std::string, Tensor> buffers;
  std::string activation_id;
  int64_t expires_unix_ms = 0;
};

struct BackwardCall {
  std::string activation_id;
  BackwardArgs args;
};

struct SessionInfo {
  std::string session_id;
  std::string label;
  int64_t step = 0;
  int64_t parameter_count = 0;
  int64_t bytes = 0;
  int64_t expires_unix_ms = 0;
};

struct CreateSessionCall {
  ModelSource model;  // a graph or an ONNX model
  std::optional<OptimizerConfig> optimizer;
  std::vector<std::string> frozen;
  uint32_t ttl_seconds = 0;
  std::string label;
};

struct GetParametersCall {
  std::string session_id;
  std::vector<std::string> names;  // empty = all
  bool include_optimizer_state = false;
};

struct SessionValues {
  std::map<std::string, Tensor> parameters;
  std::map<std::string, Tensor> buffers;
  std::map<std::string, Tensor> optimizer_state;
  int64_t step = 0;
};

struct SetParametersCall {
  std::string session_id;
  std::map<std::string, Tensor> parameters;
  std::map<std::string, Tensor> buffers;
  std::map<std::string, Tensor> optimizer_state;
  std::optional<int64_t> step;
};

struct TrainStepCall {
  std::string session_id;
  TensorMap feeds;
  std::string loss;
  std::vector<std::string> fetch;
  uint64_t seed = 0;
  double learning_rate = 0;  // 0 = the optimizer's
  bool diagnostics = false;
};

struct TrainStepReply {
  Tensor loss;
  std::map<std::string, Tensor> outputs;
  int64_t step = 0;
  double grad_norm = 0;
  std::optional<Diagnostics> diagnostics;  // when asked for
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_CALLS_H_
