// Which codes are retried, how long the waits are, and how many calls.
#include "client/retry.h"

#include <set>

#include "gtest/gtest.h"

namespace gradserve::client {
namespace {

TEST(Retry, OnlyTryLaterCodesAreRetryable) {
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kDeadlineExceeded));
  for (auto code :
       {absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
        absl::StatusCode::kInternal, absl::StatusCode::kUnimplemented,
        absl::StatusCode::kPermissionDenied, absl::StatusCode::kCancelled,
        absl::StatusCode::kOk}) {
    EXPECT_FALSE(IsRetryable(code)) << absl::StatusCodeToString(code);
  }
}

TEST(Retry, BackoffGrowsExponentiallyWithJitterUpToTheCap) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Milliseconds(100);
  policy.max_backoff = absl::Seconds(2);
  std::mt19937_64 random(7);
  for (int retry = 1; retry <= 8; ++retry) {
    const double base = std::min(0.1 * (1 << (retry - 1)), 2.0);
    std::set<int64_t> seen;
    for (int i = 0; i < 200; ++i) {
      const double s = absl::ToDoubleSeconds(Backoff(policy, retry, random));
      EXPECT_GE(s, 0.5 * base - 1e-9) << retry;
      EXPECT_LE(s, std::min(1.5 * base, 2.0) + 1e-9) << retry;
      seen.insert(static_cast<int64_t>(s * 1e6));
    }
    if (1.5 * base <= 2.0) {  // below the cap, jitter spreads the waits
      EXPECT_GT(seen.size(), 150u) << retry;
    }
  }
}

TEST(Retry, RetriesRetryableCodesUpToTheLimit) {
  RetryPolicy policy;
  policy.max_retries = 3;
  policy.initial_backoff = absl::Microseconds(10);
  std::mt19937_64 random(1);
  int calls = 0, retries = 0;
  absl::Status status = CallWithRetries(
      policy, random,
      [&] {
        ++calls;
        return absl::ResourceExhaustedError("queue full");
      },
      [&](const absl::Status&) { ++retries; });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(retries, 3);
}

TEST(Retry, SucceedsAfterTransientFailures) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Microseconds(10);
  std::mt19937_64 random(1);
  int calls = 0;
  absl::Status status = CallWithRetries(
      policy, random,
      [&] {
        return ++calls < 3 ? absl::UnavailableError("restarting")
                           : absl::OkStatus();
      },
      [](const absl::Status&) {});
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(calls, 3);
}

TEST(Retry, NeverRetriesABadRequest) {
  std::mt19937_64 random(1);
  int calls = 0;
  absl::Status status = CallWithRetries(
      RetryPolicy(), random,
      [&] {
        ++calls;
        return absl::InvalidArgumentError("x: wrong shape");
      },
      [](const absl::Status&) { ADD_FAILURE() << "retried"; });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);
}

TEST(Retry, AStopRequestEndsTheWait) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Seconds(30);
  std::mt19937_64 random(1);
  std::atomic<bool> stop{false};
  const absl::Time start = absl::Now();
  absl::Status status = CallWithRetries(
      policy, random, [] { return absl::UnavailableError("down"); },
      [&](const absl::Status&) { stop = true; }, [&] { return stop.load(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace gradserve::client
