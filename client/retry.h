// When and how long gradctl waits before calling again: exponential backoff
// with jitter, on the codes that say "try later" (the server is restarting
// or unreachable, its queue is full, the call ran out of time), never on
// those that say the request itself is wrong.
#ifndef GRADSERVE_CLIENT_RETRY_H_
#define GRADSERVE_CLIENT_RETRY_H_

#include <cstdint>
#include <functional>
#include <random>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace gradserve::client {

struct RetryPolicy {
  int max_retries = 8;  // calls after the first
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  double multiplier = 2;
  // Each wait is drawn uniformly from [(1 - jitter) b, (1 + jitter) b] around
  // the exponential b (then capped at max_backoff), so that many clients
  // refused at once do not come back at once.
  double jitter = 0.5;
};

// UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED.
bool IsRetryable(absl::StatusCode code);

// The wait before retry number `retry` (1 = the first retry).
absl::Duration Backoff(const RetryPolicy& policy, int retry,
                       std::mt19937_64& random);

// Calls `call` until it succeeds, fails with a code that is not retryable,
// or has been retried policy.max_retries times; waits Backoff between calls
// and calls `on_retry(status)` before each wait. Stops waiting (returning
// the last status) once `stopped()` says so.
absl::Status CallWithRetries(
    const RetryPolicy& policy, std::mt19937_64& random,
    const std::function<absl::Status()>& call,
    const std::function<void(const absl::Status&)>& on_retry,
    const std::function<bool()>& stopped = nullptr);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_RETRY_H_
