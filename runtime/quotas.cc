#include "runtime/quotas.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gradserve::runtime {
namespace {

struct QuotaName {
  const char* flag;     // the server flag that sets the default
  const char* unit;     // what is counted
  const char* release;  // how a tenant gets under it again
};

constexpr QuotaName kSessionsQuota = {"tenant_max_sessions", "sessions",
                                      "close some first"};
constexpr QuotaName kBytesQuota = {
    "tenant_max_bytes", "bytes",
    "close sessions, run or let expire Forward activations, or unregister "
    "shared-memory regions first"};
constexpr QuotaName kCallsQuota = {"tenant_max_concurrent_calls",
                                   "calls in flight",
                                   "wait for some to finish; retry later"};

// OK when `more` fits under `limit` (0 = unlimited) next to `held`.
absl::Status Check(const QuotaName& quota, const std::string& tenant,
                   absl::string_view what, int64_t held, int64_t more,
                   int64_t limit) {
  if (limit <= 0 || more <= 0 || more <= limit - held) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      what, ": over the quota ", quota.flag, " of tenant '", tenant,
      "': it holds ", held, " ", quota.unit, " of its limit ", limit,
      ", and this needs ", more, " more; ", quota.release));
}

}  // namespace

TenantQuotas::Hold& TenantQuotas::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    Release();
    quotas_ = std::exchange(other.quotas_, nullptr);
    tenant_ = std::move(other.tenant_);
    amounts_ = std::exchange(other.amounts_, TenantAmounts{});
  }
  return *this;
}

void TenantQuotas::Hold::Release() {
  if (quotas_ != nullptr) quotas_->Add(tenant_, amounts_, -1);
  quotas_ = nullptr;
  amounts_ = TenantAmounts{};
}

void TenantQuotas::Hold::SetBytes(int64_t bytes) {
  if (quotas_ == nullptr) return;
  quotas_->Add(tenant_, {0, bytes - amounts_.bytes, 0}, 1);
  amounts_.bytes = bytes;
}

TenantQuotas::TenantQuotas(QuotaOptions options)
    : options_(std::move(options)) {}

TenantAmounts TenantQuotas::LimitsOf(const std::string& tenant) const {
  TenantAmounts limits = options_.defaults;
  auto it = options_.tenants.find(tenant);
  if (it == options_.tenants.end()) return limits;
  const QuotaOverride& own = it->second;
  limits.sessions = own.sessions.value_or(limits.sessions);
  limits.bytes = own.bytes.value_or(limits.bytes);
  limits.calls = own.calls.value_or(limits.calls);
  return limits;
}

absl::StatusOr<TenantQuotas::Hold> TenantQuotas::Acquire(
    const std::string& tenant, const TenantAmounts& amounts,
    absl::string_view what) {
  const TenantAmounts limits = LimitsOf(tenant);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = use_.find(tenant);
  const TenantAmounts held = it == use_.end() ? TenantAmounts{} : it->second;
  absl::Status status = Check(kSessionsQuota, tenant, what, held.sessions,
                              amounts.sessions, limits.sessions);
  if (status.ok()) {
    status = Check(kBytesQuota, tenant, what, held.bytes, amounts.bytes,
                   limits.bytes);
  }
  if (status.ok()) {
    status = Check(kCallsQuota, tenant, what, held.calls, amounts.calls,
                   limits.calls);
  }
  if (!status.ok()) return status;
  AddLocked(tenant, amounts, 1);
  Hold hold;
  hold.quotas_ = this;
  hold.tenant_ = tenant;
  hold.amounts_ = amounts;
  return hold;
}

void TenantQuotas::Add(const std::string& tenant, const TenantAmounts& amounts,
                       int sign) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(tenant, amounts, sign);
}

void TenantQuotas::AddLocked(const std::string& tenant,
                             const TenantAmounts& amounts, int sign) {
  TenantAmounts& held = use_[tenant];
  held.sessions += sign * amounts.sessions;
  held.bytes += sign * amounts.bytes;
  held.calls += sign * amounts.calls;
  if (held.sessions == 0 && held.bytes == 0 && held.calls == 0) {
    use_.erase(tenant);
  }
}

TenantAmounts TenantQuotas::UseOf(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = use_.find(tenant);
  return it == use_.end() ? TenantAmounts{} : it->second;
}

int64_t TenantQuotas::tenants_holding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(use_.size());
}

}  // namespace gradserve::runtime
