// The runtime: gradserve's use cases over core, shared by the unary RPCs
// and the stream. It resolves a request's model (a graph, a session),
// finds or compiles its program in the cache, holds sessions and Forward
// activations, and bounds the memory requests hold. No gRPC here: the
// server decodes requests into runtime/calls.h and encodes the results.
#ifndef GRADSERVE_RUNTIME_RUNTIME_H_
#define GRADSERVE_RUNTIME_RUNTIME_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/analysis/hessian.h"
#include "core/analysis/objective.h"
#include "core/compile/program_cache.h"
#include "core/graph.h"
#include "runtime/activations.h"
#include "runtime/calls.h"
#include "runtime/memory_budget.h"
#include "runtime/periodic.h"
#include "runtime/persistence.h"
#include "runtime/quotas.h"
#include "runtime/sessions.h"
#include "runtime/shared_memory.h"

namespace gradserve::runtime {

struct RuntimeOptions {
  Limits limits;
  int64_t program_cache_bytes = int64_t{256} << 20;
  // Bytes that queued and running requests may hold in all.
  int64_t max_inflight_bytes = int64_t{8} << 30;
  SessionOptions sessions;
  ActivationOptions activations;
  // Per-tenant limits on sessions, bytes held and calls in flight.
  QuotaOptions quotas;
};

// What a call holds from its arrival to its reply: one of its tenant's
// calls in flight, and its message (and the parsed copy) in the budget.
struct Admission {
  TenantQuotas::Hold call;
  MemoryBudget::Reservation message;
};

RunControl Control(const CallContext& ctx, uint64_t seed);
using InputMetas = absl::flat_hash_map<std::string, TensorMeta>;
InputMetas MetasOf(const TensorMap& feeds);
// The float dtype a request runs in: float64 when any floating tensor of it
// (feeds, seeds, the model's parameters and buffers) is float64, else
// float32.
DType FloatDtypeOf(const TensorMap& feeds, const TensorMap& seeds,
                   const ValueSet& values);

class Runtime {
 public:
  // Work runs on `pool`: session steps on their strands over it.
  Runtime(const RuntimeOptions& options, ComputePool* pool);
  ~Runtime();

  // A call arriving with a message of `message_bytes`: RESOURCE_EXHAUSTED
  // over the tenant's calls in flight or the memory budget.
  absl::StatusOr<Admission> AdmitCall(const CallContext& ctx,
                                      int64_t message_bytes);

  absl::StatusOr<ComputeReply> Compute(const CallContext& ctx,
                                       ComputeCall call);
  // Compute in two steps, for a caller that picks the thread to run on from
  // the program (the server runs tiny cached programs on gRPC's thread):
  // PlanCompute resolves the call's model and finds its program in the cache
  // (compiling it on a miss when `compile`, else leaving it for RunCompute);
  // RunCompute runs the plan. Compute is both on the calling thread.
  class ComputePlan;
  absl::StatusOr<ComputePlan> PlanCompute(const CallContext& ctx,
                                          ComputeCall call, bool compile);
  absl::StatusOr<ComputeReply> RunCompute(const CallContext& ctx,
                                          ComputePlan plan);
  absl::StatusOr<GraphSummary> Describe(const CallContext& ctx,
                                        DescribeCall call);
  absl::StatusOr<ForwardReply> Forward(const CallContext& ctx,
                                       ForwardCall call);
  absl::StatusOr<std::map<std::string, Tensor>> Backward(const CallContext& ctx,
                                                         BackwardCall call);

  absl::StatusOr<SessionInfo> CreateSession(const CallContext& ctx,
                                            CreateSessionCall call);
  absl::Status CloseSession(const CallContext& ctx,
                            const std::string& session_id);
  std::vector<SessionInfo> ListSessions(const CallContext& ctx);
  absl::StatusOr<SessionValues> GetParameters(const CallContext& ctx,
                                              const GetParametersCall& call);
  absl::StatusOr<SessionInfo> SetParameters(const CallContext& ctx,
                                            SetParametersCall call);
  absl::StatusOr<TrainStepReply> TrainStep(const CallContext& ctx,
                                           TrainStepCall call);

  // Analysis beyond gradients (runtime/analysis_calls.cc).
  absl::StatusOr<GradientCheck> CheckGradients(const CallContext& ctx,
                                               CheckGradientsCall call);
  absl::StatusOr<std::map<std::string, Tensor>> HessianVectorProduct(
      const CallContext& ctx, HessianVectorProductCall call);
  absl::StatusOr<HessianSpectrum> HessianEigenvalues(
      const CallContext& ctx, HessianEigenvaluesCall call);

  // Restores the sessions saved in options.state_dir and snapshots them
  // there from then on (runtime/persistence.h). Call once, before serving.
  absl::Status EnablePersistence(const PersistenceOptions& options,
                                 std::shared_ptr<const SessionCodec> codec);
  // Null when sessions are not persisted.
  SessionPersistence* persistence() { return persistence_.get(); }

  // Turns same-host shared memory on (runtime/shared_memory.h); off until
  // then. Call once, before serving.
  absl::Status EnableSharedMemory(const SharedMemoryOptions& options) {
    return shared_memory_.Enable(options);
  }
  SharedMemoryRegistry& shared_memory() { return shared_memory_; }

  ComputePool* pool() { return pool_; }
  MemoryBudget& memory_budget() { return budget_; }
  SessionManager& sessions() { return sessions_; }
  ActivationStore& activations() { return activations_; }
  TenantQuotas& quotas() { return quotas_; }
  ProgramCacheStats cache_stats() const { return cache_.stats(); }
  const Limits& limits() const { return limits_; }

 private:
  // A request's model: where its program's index comes from on a cache
  // miss, and the values it binds.
  struct Model {
    std::string graph_key;
    ProgramCache::IndexSource index;
    std::shared_ptr<const ValueSet> values;
    std::string route;  // for activations of this model
  };

  // `inputs`: the shapes an ONNX model is imported for (its dynamic axes).
  absl::StatusOr<Model> Resolve(const CallContext& ctx, ModelSource source,
                                const InputMetas& inputs = {});
  static Model SessionModel(const Session& session);
  absl::StatusOr<std::shared_ptr<const Program>> ProgramFor(
      const Model& model, const ProgramRequest& request);
  // The objective of an analysis call over its model's programs and values.
  absl::StatusOr<Objective> ObjectiveFor(const CallContext& ctx,
                                         ModelSource source, ComputeArgs args);
  // Reserves what running `program` may allocate, and its results.
  absl::StatusOr<MemoryBudget::Reservation> ReserveRun(const Program& program);
  void Expire();

  const Limits limits_;
  ComputePool* const pool_;
  ProgramCache cache_;
  MemoryBudget budget_;
  TenantQuotas quotas_;  // before what holds shares of it
  SessionManager sessions_;
  ActivationStore activations_;
  SharedMemoryRegistry shared_memory_;
  std::unique_ptr<SessionPersistence> persistence_;  // before sessions_ goes
  // Expires idle sessions, activations and shared-memory regions, once a
  // second. Last: starts once the rest is built.
  Periodic janitor_;
};

class Runtime::ComputePlan {
 public:
  // The program found in the cache; null until compiled.
  const Program* program() const { return program_.get(); }

 private:
  friend class Runtime;
  Model model_;
  ComputeCall call_;  // its model resolved into model_
  ProgramRequest request_;
  std::shared_ptr<const Program> program_;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_RUNTIME_H_
