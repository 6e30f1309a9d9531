#include "runtime/sessions.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "runtime/ids.h"

namespace gradserve::runtime {
namespace {

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(
      absl::StrCat("session '", id, "' not found: unknown, closed or expired"));
}

int64_t StateBytes(const std::map<std::string, Tensor>& tensors) {
  int64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.meta().num_bytes();
  return total;
}

}  // namespace

DType SessionFloatDtype(const SessionSpec& spec) {
  for (const auto* tensors :
       {&spec.graph.parameters, &spec.graph.buffers, &spec.optimizer_state}) {
    for (const auto& [name, t] : *tensors) {
      if (t.dtype() == DType::kFloat64) return DType::kFloat64;
    }
  }
  return DType::kFloat32;
}

void CastFloats(std::map<std::string, Tensor>& tensors, DType dtype) {
  for (auto& [name, t] : tensors) t = t.CastFloat(dtype);
}

int64_t SessionBytes(const GraphDef& graph,
                     const std::optional<OptimizerConfig>& optimizer,
                     const std::vector<std::string>& frozen) {
  int64_t bytes = StateBytes(graph.parameters) + StateBytes(graph.buffers);
  if (!optimizer) return bytes;
  const int64_t per_parameter =
      static_cast<int64_t>(OptimizerStateNames(*optimizer).size());
  for (const auto& [name, t] : graph.parameters) {
    if (std::find(frozen.begin(), frozen.end(), name) != frozen.end()) continue;
    bytes += per_parameter * t.meta().num_bytes();
  }
  return bytes;
}

Session::Session(const SessionSpec& spec,
                 std::shared_ptr<const GraphIndex> index,
                 std::shared_ptr<Strand> strand)
    : id_(spec.id),
      tenant_(spec.tenant),
      label_(spec.label),
      index_(std::move(index)),
      optimizer_(spec.optimizer),
      frozen_(spec.frozen),
      ttl_seconds_(spec.ttl_seconds),
      float_dtype_(SessionFloatDtype(spec)),
      store_(nullptr),
      strand_(std::move(strand)),
      last_used_(absl::Now()) {
  structure_.nodes = spec.graph.nodes;
  structure_.inputs = spec.graph.inputs;
  structure_.outputs = spec.graph.outputs;
  auto values = std::make_shared<ValueSet>();
  values->parameters = spec.graph.parameters;
  values->buffers = spec.graph.buffers;
  values->optimizer_state = spec.optimizer_state;
  values->step = spec.step;
  for (const auto& [name, t] : spec.graph.parameters) {
    parameter_count_ += t.num_elements();
    if (std::find(frozen_.begin(), frozen_.end(), name) == frozen_.end()) {
      trained_.push_back(name);
    }
  }
  store_.Publish(std::move(values));
}

SessionInfo Session::Info() const {
  SessionInfo info;
  info.session_id = id_;
  info.label = label_;
  auto values = store_.Current();
  info.step = values->step;
  info.parameter_count = parameter_count_;
  info.bytes = values->bytes();
  info.expires_unix_ms = absl::ToUnixMillis(expires());
  return info;
}

absl::Time Session::expires() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_used_ + absl::Seconds(ttl_seconds_);
}

void Session::Touch() {
  std::lock_guard<std::mutex> lock(mu_);
  last_used_ = absl::Now();
}

absl::Status SessionManager::CheckSpec(const SessionSpec& spec,
                                       const GraphIndex& index) const {
  if (spec.optimizer) RETURN_IF_ERROR(ValidateOptimizer(*spec.optimizer));
  absl::flat_hash_set<std::string> seen;
  for (const std::string& name : spec.frozen) {
    const int id = index.ValueId(name);
    if (id < 0 || index.values()[id].kind != ValueKind::kParameter) {
      return absl::InvalidArgumentError(
          absl::StrCat("frozen: '", name, "' is not a parameter of the graph"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("frozen: '", name, "' is named twice"));
    }
  }
  if (spec.ttl_seconds > options_.max_ttl_seconds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl_seconds: ", spec.ttl_seconds, " is over the server's most, ",
        options_.max_ttl_seconds, " (--max_session_ttl_seconds)"));
  }
  if (!spec.route.empty()) RETURN_IF_ERROR(CheckRoute(spec.route));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Session>> SessionManager::Create(
    SessionSpec spec, const Limits& limits) {
  const DType dtype = SessionFloatDtype(spec);
  CastFloats(spec.graph.parameters, dtype);
  CastFloats(spec.graph.buffers, dtype);
  CastFloats(spec.optimizer_state, dtype);
  ASSIGN_OR_RETURN(auto index, GraphIndex::Build(spec.graph, limits));
  RETURN_IF_ERROR(CheckSpec(spec, *index));
  if (spec.optimizer && !spec.optimizer_state.empty()) {
    std::map<std::string, TensorMeta> metas;
    for (const auto& [name, t] : spec.graph.parameters) metas[name] = t.meta();
    RETURN_IF_ERROR(
        ValidateOptimizerState(*spec.optimizer, metas, spec.optimizer_state));
  }
  if (spec.ttl_seconds == 0) spec.ttl_seconds = options_.default_ttl_seconds;
  if (spec.id.empty()) spec.id = NewId(spec.route);
  const int64_t bytes = SessionBytes(spec.graph, spec.optimizer, spec.frozen);
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(TenantQuotas::Hold quota, Admit(spec.tenant, bytes));
  auto session = std::shared_ptr<Session>(
      new Session(spec, std::move(index),
                  Strand::Create(pool_, options_.max_queued_steps)));
  session->reserved_bytes_ = bytes;
  session->quota_ = std::move(quota);
  reserved_ += bytes;
  sessions_.emplace(session->id(), session);
  return session;
}

absl::StatusOr<TenantQuotas::Hold> SessionManager::Admit(
    const std::string& tenant, int64_t bytes) const {
  if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds ", sessions_.size(), " sessions, its most (",
        "--max_sessions); close some first"));
  }
  if (bytes > options_.max_bytes - reserved_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the session would hold ", bytes,
                     " bytes (parameters, buffers, "
                     "optimizer state), but sessions hold ",
                     reserved_, " of the server's ", options_.max_bytes,
                     " (--max_session_bytes)"));
  }
  if (quotas_ == nullptr) return TenantQuotas::Hold();
  return quotas_->Acquire(tenant, {1, bytes, 0}, "CreateSession");
}

std::shared_ptr<Session> SessionManager::Remove(
    absl::flat_hash_map<std::string, std::shared_ptr<Session>>::iterator it) {
  std::shared_ptr<Session> removed = std::move(it->second);
  reserved_ -= removed->reserved_bytes_;
  removed->quota_.Release();
  sessions_.erase(it);
  return removed;
}

absl::StatusOr<std::shared_ptr<Session>> SessionManager::Find(
    const std::string& tenant, const std::string& id) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->tenant() != tenant) {
      return NotFound(id);
    }
    session = it->second;
  }
  if (session->expires() <= absl::Now()) return NotFound(id);
  session->Touch();
  return session;
}

absl::Status SessionManager::Close(const std::string& tenant,
                                   const std::string& id) {
  std::shared_ptr<Session> closed;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->tenant() != tenant) {
    return NotFound(id);
  }
  closed = Remove(it);
  return absl::OkStatus();
}

bool SessionManager::Contains(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.contains(id);
}

std::vector<SessionInfo> SessionManager::List(const std::string& tenant) const {
  std::vector<SessionInfo> infos;
  for (const auto& session : All()) {
    if (session->tenant() == tenant) infos.push_back(session->Info());
  }
  std::sort(infos.begin(), infos.end(),
            [](const SessionInfo& a, const SessionInfo& b) {
              return a.session_id < b.session_id;
            });
  return infos;
}

std::vector<std::shared_ptr<Session>> SessionManager::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Session>> all;
  for (const auto& [id, session] : sessions_) all.push_back(session);
  return all;
}

void SessionManager::Expire(absl::Time now) {
  std::vector<std::shared_ptr<Session>> expired;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second->expires() > now) {
      ++it;
      continue;
    }
    expired.push_back(Remove(it++));
  }
}

int64_t SessionManager::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(sessions_.size());
}

int64_t SessionManager::bytes_reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reserved_;
}

}  // namespace gradserve::runtime
