// Per-tenant quotas: the accounting itself (the stores' shares of it are
// tested with the stores, in stores_test.cc and shared_memory_test.cc).
#include "runtime/quotas.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::runtime {
namespace {

using absl::StatusCode;
using ::gradserve::testing::ExpectStatus;

TEST(TenantQuotas, RefusesOverEachLimitNamingQuotaTenantLimitAndUse) {
  TenantQuotas quotas(QuotaOptions{{2, 100, 3}, {}});
  auto a = quotas.Acquire("t", {1, 60, 0}, "CreateSession");
  auto b = quotas.Acquire("t", {1, 40, 0}, "CreateSession");
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectStatus(quotas.Acquire("t", {1, 0, 0}, "CreateSession").status(),
               StatusCode::kResourceExhausted,
               {"CreateSession", "tenant_max_sessions", "tenant 't'",
                "holds 2 sessions", "limit 2", "close some first"});
  a->Release();
  ExpectStatus(quotas.Acquire("t", {0, 61, 0}, "Forward").status(),
               StatusCode::kResourceExhausted,
               {"Forward", "tenant_max_bytes", "holds 40 bytes", "limit 100",
                "61 more"});
  std::vector<TenantQuotas::Hold> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(*quotas.Acquire("t", {0, 0, 1}, "the call"));
  }
  ExpectStatus(
      quotas.Acquire("t", {0, 0, 1}, "the call").status(),
      StatusCode::kResourceExhausted,
      {"tenant_max_concurrent_calls", "holds 3 calls in flight", "limit 3"});
  // A refusal holds nothing; another tenant has limits of its own.
  EXPECT_EQ(quotas.UseOf("t").calls, 3);
  EXPECT_EQ(quotas.UseOf("t").bytes, 40);
  EXPECT_TRUE(quotas.Acquire("u", {2, 100, 3}, "x").ok());
  EXPECT_EQ(quotas.UseOf("u").sessions, 0);  // released at once
  calls.clear();
  b->Release();
  EXPECT_EQ(quotas.tenants_holding(), 0);
}

TEST(TenantQuotas, ZeroIsUnlimitedAndOverridesReplaceDefaults) {
  QuotaOptions options{{1, 0, 0}, {}};
  options.tenants["big"].sessions = 0;
  options.tenants["small"].bytes = 10;
  TenantQuotas quotas(options);
  EXPECT_EQ(quotas.LimitsOf("small").sessions, 1);  // the default stays
  EXPECT_EQ(quotas.LimitsOf("small").bytes, 10);
  std::vector<TenantQuotas::Hold> held;
  for (int i = 0; i < 100; ++i) {
    auto hold = quotas.Acquire("big", {1, int64_t{1} << 50, 1}, "x");
    ASSERT_TRUE(hold.ok()) << hold.status();
    held.push_back(*std::move(hold));
  }
  EXPECT_EQ(quotas.UseOf("big").sessions, 100);
  ExpectStatus(quotas.Acquire("small", {0, 11, 0}, "x").status(),
               StatusCode::kResourceExhausted, {"'small'", "limit 10"});
}

TEST(TenantQuotas, HoldsMoveSetBytesAndReleaseOnce) {
  TenantQuotas quotas(QuotaOptions{{0, 100, 0}, {}});
  TenantQuotas::Hold moved;
  {
    auto hold = quotas.Acquire("t", {0, 50, 0}, "x");
    ASSERT_TRUE(hold.ok());
    moved = *std::move(hold);
  }
  EXPECT_EQ(quotas.UseOf("t").bytes, 50);
  moved.SetBytes(20);  // an activation's actual size replacing its bound
  EXPECT_EQ(quotas.UseOf("t").bytes, 20);
  EXPECT_EQ(moved.amounts().bytes, 20);
  moved.Release();
  moved.Release();
  EXPECT_EQ(quotas.UseOf("t").bytes, 0);
}

TEST(TenantQuotas, ConcurrentAcquiresNeverPassTheLimit) {
  TenantQuotas quotas(QuotaOptions{{0, 0, 4}, {}});
  std::atomic<int> over{0}, peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto hold = quotas.Acquire("t", {0, 0, 1}, "the call");
        if (!hold.ok()) continue;
        const int64_t now = quotas.UseOf("t").calls;
        if (now > 4) ++over;
        peak = std::max<int>(peak, static_cast<int>(now));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(over, 0);
  EXPECT_GE(peak, 1);
  EXPECT_EQ(quotas.tenants_holding(), 0);
}

}  // namespace
}  // namespace gradserve::runtime
