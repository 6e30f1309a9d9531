#include "client/retry.h"

#include <algorithm>
#include <cmath>

namespace gradserve::client {

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration Backoff(const RetryPolicy& policy, int retry,
                       std::mt19937_64& random) {
  const double base_s =
      std::min(absl::ToDoubleSeconds(policy.initial_backoff) *
                   std::pow(policy.multiplier, std::max(retry - 1, 0)),
               absl::ToDoubleSeconds(policy.max_backoff));
  std::uniform_real_distribution<double> spread(1 - policy.jitter,
                                                1 + policy.jitter);
  const double wait_s = std::min(base_s * spread(random),
                                 absl::ToDoubleSeconds(policy.max_backoff));
  return absl::Seconds(std::max(wait_s, 0.0));
}

absl::Status CallWithRetries(
    const RetryPolicy& policy, std::mt19937_64& random,
    const std::function<absl::Status()>& call,
    const std::function<void(const absl::Status&)>& on_retry,
    const std::function<bool()>& stopped) {
  auto stop = [&] { return stopped && stopped(); };
  for (int retry = 1;; ++retry) {
    absl::Status status = call();
    if (status.ok() || !IsRetryable(status.code()) ||
        retry > policy.max_retries) {
      return status;
    }
    if (stop()) return status;
    on_retry(status);
    // Sleep in slices so that a stop request is seen soon.
    const absl::Time until = absl::Now() + Backoff(policy, retry, random);
    while (absl::Now() < until) {
      if (stop()) return status;
      absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(50)));
    }
  }
}

}  // namespace gradserve::client
