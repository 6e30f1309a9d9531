// Per-tenant quotas: how many sessions a tenant holds, the bytes it holds
// (its sessions' parameters, buffers and optimizer state, its Forward
// activations, the shared-memory regions it registered) and its calls in
// flight. What a tenant holds is a Hold, given back when destroyed: every
// path that drops a session, an activation, a region or a call (close,
// expiry, cancel, error) gives its share back by dropping the Hold.
// Over a quota is RESOURCE_EXHAUSTED naming the quota, the tenant, the
// limit and the current use. These come on top of the server-wide limits.
#ifndef GRADSERVE_RUNTIME_QUOTAS_H_
#define GRADSERVE_RUNTIME_QUOTAS_H_

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradserve::runtime {

// Amounts of the three resources: a tenant's limits (0 = unlimited) or
// what it holds.
struct TenantAmounts {
  int64_t sessions = 0;
  int64_t bytes = 0;
  int64_t calls = 0;
};

// One tenant's own limits, where they differ from the defaults.
struct QuotaOverride {
  std::optional<int64_t> sessions, bytes, calls;
};

struct QuotaOptions {
  TenantAmounts defaults;  // every tenant's, unless overridden; 0 = unlimited
  absl::flat_hash_map<std::string, QuotaOverride> tenants;
};

class TenantQuotas {
 public:
  // What one tenant holds until destroyed (or moved from, or released).
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept { *this = std::move(other); }
    Hold& operator=(Hold&& other) noexcept;
    ~Hold() { Release(); }
    void Release();
    // Holds `bytes` instead of what it held, unchecked: an activation's
    // actual size replacing the bound it was admitted with.
    void SetBytes(int64_t bytes);
    const TenantAmounts& amounts() const { return amounts_; }

   private:
    friend class TenantQuotas;
    TenantQuotas* quotas_ = nullptr;
    std::string tenant_;
    TenantAmounts amounts_;
  };

  explicit TenantQuotas(QuotaOptions options = {});
  TenantQuotas(const TenantQuotas&) = delete;
  TenantQuotas& operator=(const TenantQuotas&) = delete;

  // `amounts` more for `tenant`, or RESOURCE_EXHAUSTED when that takes it
  // over one of its limits; `what` is what asks (e.g. "CreateSession").
  absl::StatusOr<Hold> Acquire(const std::string& tenant,
                               const TenantAmounts& amounts,
                               absl::string_view what);
  TenantAmounts LimitsOf(const std::string& tenant) const;
  TenantAmounts UseOf(const std::string& tenant) const;
  // Tenants holding anything.
  int64_t tenants_holding() const;

 private:
  void Add(const std::string& tenant, const TenantAmounts& amounts, int sign);
  void AddLocked(const std::string& tenant, const TenantAmounts& amounts,
                 int sign);

  const QuotaOptions options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, TenantAmounts> use_;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_QUOTAS_H_
