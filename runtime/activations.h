// Forward now, Backward later: the tapes that Forward calls leave, held by
// id until a Backward uses them (unless it keeps them), they expire, or the
// store's memory limit would be passed. A tenant sees only its own.
#ifndef GRADSERVE_RUNTIME_ACTIVATIONS_H_
#define GRADSERVE_RUNTIME_ACTIVATIONS_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/exec/tape.h"
#include "runtime/quotas.h"

namespace gradserve::runtime {

struct ActivationOptions {
  uint32_t default_ttl_seconds = 300;
  uint32_t max_ttl_seconds = 3600;
  int64_t max_bytes = int64_t{2} << 30;  // all held activations together
};

struct Activation {
  std::mutex mu;  // one Backward at a time
  std::unique_ptr<Tape> tape;
};

class ActivationStore {
 public:
  // `quotas` (may be null: none) counts each tenant's bytes.
  explicit ActivationStore(const ActivationOptions& options,
                           TenantQuotas* quotas = nullptr)
      : options_(options), quotas_(quotas) {}

  // Room for a tape of up to `bytes` (before its Forward runs); given back
  // by Put or, unused, when the returned value is destroyed.
  class Claim {
   public:
    Claim() = default;
    Claim(Claim&& o) noexcept { *this = std::move(o); }
    Claim& operator=(Claim&& o) noexcept;
    ~Claim();

   private:
    friend class ActivationStore;
    ActivationStore* store_ = nullptr;
    int64_t bytes_ = 0;
    TenantQuotas::Hold quota_;
  };
  // Checks the server's limit, then the tenant's quota.
  absl::StatusOr<Claim> ClaimBytes(const std::string& tenant, int64_t bytes);

  struct Held {
    std::string id;
    int64_t expires_unix_ms = 0;
  };
  // INVALID_ARGUMENT for a ttl over the most the server allows.
  absl::Status CheckTtl(uint32_t ttl_seconds) const;
  // Holds `tape` for `ttl_seconds` (0 = the default; checked) under a new id
  // with `route`; its actual size replaces the claim.
  Held Put(const std::string& tenant, absl::string_view route,
           std::unique_ptr<Tape> tape, uint32_t ttl_seconds, Claim claim);
  // NOT_FOUND (naming the id) for unknown, released, expired or another
  // tenant's activations.
  absl::StatusOr<std::shared_ptr<Activation>> Find(const std::string& tenant,
                                                   const std::string& id);
  void Release(const std::string& tenant, const std::string& id);
  // Drops the activations whose time is up.
  void Expire(absl::Time now);

  const ActivationOptions& options() const { return options_; }
  int64_t bytes_held() const;
  int64_t count() const;

 private:
  struct Entry {
    std::shared_ptr<Activation> activation;
    std::string tenant;
    int64_t bytes;
    TenantQuotas::Hold quota;  // the tenant's share of `bytes`
    absl::Time expires;
  };
  void Unclaim(int64_t bytes);

  const ActivationOptions options_;
  TenantQuotas* const quotas_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_;
  int64_t held_ = 0;  // held and claimed bytes
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_ACTIVATIONS_H_
