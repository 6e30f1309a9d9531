// Sessions: a model held server-side under an unguessable id, with its
// parameters, buffers and optimizer state as versions in a value store.
// Steps on one session run on its strand, one at a time in arrival order;
// readers (Compute, Forward, GetParameters) take the current version and
// never wait. Sessions expire after their idle TTL.
#ifndef GRADSERVE_RUNTIME_SESSIONS_H_
#define GRADSERVE_RUNTIME_SESSIONS_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/compile/graph_index.h"
#include "core/exec/value_store.h"
#include "core/train/optimizer.h"
#include "runtime/calls.h"
#include "runtime/compute_pool.h"
#include "runtime/quotas.h"
#include "runtime/strand.h"

namespace gradserve::runtime {

struct SessionOptions {
  uint32_t default_ttl_seconds = 3600;
  uint32_t max_ttl_seconds = 7 * 24 * 3600;
  int64_t max_sessions = 1000;
  // Bytes all sessions together may hold: parameters, buffers, optimizer
  // state (counted at creation for what the optimizer will keep).
  int64_t max_bytes = int64_t{4} << 30;
  // Steps that may wait on one session.
  size_t max_queued_steps = 256;
};

// How a session is made, and what a snapshot of it restores.
struct SessionSpec {
  std::string id;  // empty: a new one is drawn
  std::string tenant;
  std::string route;  // for a new id; empty: random
  std::string label;
  GraphDef graph;  // with the parameter and buffer values to start from
  std::optional<OptimizerConfig> optimizer;
  std::vector<std::string> frozen;
  uint32_t ttl_seconds = 0;  // 0 = the default
  // Restored sessions continue from here.
  std::map<std::string, Tensor> optimizer_state;
  int64_t step = 0;
};

class Session {
 public:
  const std::string& id() const { return id_; }
  const std::string& tenant() const { return tenant_; }
  const std::string& label() const { return label_; }
  const std::shared_ptr<const GraphIndex>& index() const { return index_; }
  const std::optional<OptimizerConfig>& optimizer() const { return optimizer_; }
  const std::vector<std::string>& frozen() const { return frozen_; }
  // Parameters TrainStep updates: all but the frozen ones, in name order.
  const std::vector<std::string>& trained() const { return trained_; }
  uint32_t ttl_seconds() const { return ttl_seconds_; }
  // The dtype its floating values have and its steps run in (see
  // SessionFloatDtype).
  DType float_dtype() const { return float_dtype_; }
  const GraphDef& structure() const { return structure_; }

  std::shared_ptr<const ValueSet> values() const { return store_.Current(); }
  // Only the session's strand publishes (TrainStep, SetParameters).
  void Publish(std::shared_ptr<const ValueSet> next) {
    store_.Publish(std::move(next));
  }
  Strand& strand() { return *strand_; }

  SessionInfo Info() const;
  absl::Time expires() const;
  void Touch();

 private:
  friend class SessionManager;
  Session(const SessionSpec& spec, std::shared_ptr<const GraphIndex> index,
          std::shared_ptr<Strand> strand);

  std::string id_, tenant_, label_;
  std::shared_ptr<const GraphIndex> index_;
  GraphDef structure_;  // the graph without values, for snapshots
  std::optional<OptimizerConfig> optimizer_;
  std::vector<std::string> frozen_, trained_;
  uint32_t ttl_seconds_;
  DType float_dtype_;
  int64_t parameter_count_ = 0;
  int64_t reserved_bytes_ = 0;
  TenantQuotas::Hold quota_;  // the tenant's share; given back when removed
  ValueStore store_;
  std::shared_ptr<Strand> strand_;
  mutable std::mutex mu_;
  absl::Time last_used_;
};

class SessionManager {
 public:
  // `quotas` (may be null: none) counts each tenant's sessions and bytes.
  SessionManager(const SessionOptions& options, ComputePool* pool,
                 TenantQuotas* quotas = nullptr)
      : options_(options), pool_(pool), quotas_(quotas) {}

  absl::StatusOr<std::shared_ptr<Session>> Create(SessionSpec spec,
                                                  const Limits& limits);
  // The tenant's session of that id, touched; NOT_FOUND (naming the id) for
  // unknown, closed, expired or another tenant's sessions.
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& tenant,
                                                const std::string& id);
  absl::Status Close(const std::string& tenant, const std::string& id);
  // Whether the manager holds that id (closed and expired ones: no); does
  // not touch the session.
  bool Contains(const std::string& id) const;
  std::vector<SessionInfo> List(const std::string& tenant) const;
  std::vector<std::shared_ptr<Session>> All() const;
  void Expire(absl::Time now);

  int64_t count() const;
  int64_t bytes_reserved() const;
  const SessionOptions& options() const { return options_; }

 private:
  absl::Status CheckSpec(const SessionSpec& spec,
                         const GraphIndex& index) const;
  // Under mu_: the server-wide limits, then the tenant's quota.
  absl::StatusOr<TenantQuotas::Hold> Admit(const std::string& tenant,
                                           int64_t bytes) const;
  // Under mu_: takes the session out and gives back what it held.
  std::shared_ptr<Session> Remove(
      absl::flat_hash_map<std::string, std::shared_ptr<Session>>::iterator it);

  const SessionOptions options_;
  ComputePool* const pool_;
  TenantQuotas* const quotas_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> sessions_;
  int64_t reserved_ = 0;
};

// A session's float dtype: float64 when any floating parameter, buffer or
// optimizer state tensor it is made with is float64 (torch.optim then steps
// in float64), else float32. Its float tensors are all of that dtype.
DType SessionFloatDtype(const SessionSpec& spec);

// Floating tensors converted to `dtype` (a session's float dtype); others
// left as they are.
void CastFloats(std::map<std::string, Tensor>& tensors, DType dtype);

// The bytes a session of this graph and optimizer comes to hold.
int64_t SessionBytes(const GraphDef& graph,
                     const std::optional<OptimizerConfig>& optimizer,
                     const std::vector<std::string>& frozen);

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_SESSIONS_H_
