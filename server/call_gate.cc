#include "server/call_gate.h"

#include <algorithm>

namespace gradserve::server {

bool CallGate::Enter() {
  absl::MutexLock lock(&mu_);
  last_arrival_ = absl::Now();
  if (closed_) return false;
  ++admitted_;
  return true;
}

void CallGate::Leave() {
  absl::MutexLock lock(&mu_);
  --admitted_;
}

void CallGate::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool CallGate::WaitQuiet(absl::Time until, absl::Duration quiet) {
  for (;;) {
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      if (admitted_ == 0 && now - last_arrival_ >= quiet) return true;
    }
    if (now >= until) return false;
    absl::SleepFor(std::min(until - now, absl::Milliseconds(5)));
  }
}

int64_t CallGate::admitted() const {
  absl::MutexLock lock(&mu_);
  return admitted_;
}

absl::Status CallGate::Refused() {
  return absl::UnavailableError(
      "the server is shutting down; retry on another replica");
}

}  // namespace gradserve::server
