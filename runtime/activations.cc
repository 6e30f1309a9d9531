#include "runtime/activations.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "runtime/ids.h"

namespace gradserve::runtime {
namespace {

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat(
      "activation '", id,
      "' not found: unknown, already used by a Backward without keep, or "
      "expired"));
}

}  // namespace

ActivationStore::Claim& ActivationStore::Claim::operator=(Claim&& o) noexcept {
  if (this != &o) {
    if (store_ != nullptr) store_->Unclaim(bytes_);
    store_ = std::exchange(o.store_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    quota_ = std::move(o.quota_);
  }
  return *this;
}

ActivationStore::Claim::~Claim() {
  if (store_ != nullptr) store_->Unclaim(bytes_);
}

absl::Status ActivationStore::CheckTtl(uint32_t ttl_seconds) const {
  if (ttl_seconds <= options_.max_ttl_seconds) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "ttl_seconds: ", ttl_seconds, " is over the server's most, ",
      options_.max_ttl_seconds, " (--max_activation_ttl_seconds)"));
}

absl::StatusOr<ActivationStore::Claim> ActivationStore::ClaimBytes(
    const std::string& tenant, int64_t bytes) {
  TenantQuotas::Hold quota;
  if (quotas_ != nullptr) {
    ASSIGN_OR_RETURN(quota, quotas_->Acquire(tenant, {0, bytes, 0},
                                             "Forward's activations"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > options_.max_bytes - held_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the activations of this Forward may take ", bytes,
        " bytes, but held activations take ", held_, " of the server's ",
        options_.max_bytes,
        " (--max_activation_bytes); run their Backward calls first"));
  }
  held_ += bytes;
  Claim claim;
  claim.store_ = this;
  claim.bytes_ = bytes;
  claim.quota_ = std::move(quota);
  return claim;
}

void ActivationStore::Unclaim(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  held_ -= bytes;
}

ActivationStore::Held ActivationStore::Put(const std::string& tenant,
                                           absl::string_view route,
                                           std::unique_ptr<Tape> tape,
                                           uint32_t ttl_seconds, Claim claim) {
  const uint32_t ttl =
      ttl_seconds > 0 ? ttl_seconds : options_.default_ttl_seconds;
  Entry entry;
  entry.activation = std::make_shared<Activation>();
  entry.bytes = tape->bytes();
  entry.activation->tape = std::move(tape);
  entry.tenant = tenant;
  entry.quota = std::move(claim.quota_);
  entry.quota.SetBytes(entry.bytes);
  entry.expires = absl::Now() + absl::Seconds(ttl);
  Held held{NewId(route), absl::ToUnixMillis(entry.expires)};
  std::lock_guard<std::mutex> lock(mu_);
  // The tape's actual size takes the claim's place.
  held_ += entry.bytes - std::exchange(claim.bytes_, 0);
  claim.store_ = nullptr;
  entries_.emplace(held.id, std::move(entry));
  return held;
}

absl::StatusOr<std::shared_ptr<Activation>> ActivationStore::Find(
    const std::string& tenant, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.tenant != tenant ||
      it->second.expires <= absl::Now()) {
    return NotFound(id);
  }
  return it->second.activation;
}

void ActivationStore::Release(const std::string& tenant,
                              const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.tenant != tenant) return;
  held_ -= it->second.bytes;
  entries_.erase(it);
}

void ActivationStore::Expire(absl::Time now) {
  std::vector<std::shared_ptr<Activation>> expired;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.expires > now) {
      ++it;
      continue;
    }
    held_ -= it->second.bytes;
    expired.push_back(std::move(it->second.activation));
    entries_.erase(it++);
  }
}

int64_t ActivationStore::bytes_held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

int64_t ActivationStore::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(entries_.size());
}

}  // namespace gradserve::runtime
