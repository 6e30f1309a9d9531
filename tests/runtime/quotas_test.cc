// Per-tenant quotas: the accounting itself, and the session manager's and
// the activation store's shares of it, given back on every path.
#include "runtime/quotas.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "core/compute.h"
#include "gtest/gtest.h"
#include "runtime/activations.h"
#include "runtime/sessions.h"
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

GraphDef Linear() {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = Tensor::Zeros(DType::kFloat32, {2, 3});
  g.nodes = {{"fc", "Linear", {"x", "W"}, {"y"}, {}},
             {"sum", "Sum", {"y"}, {"L"}, {}}};
  return g;
}

SessionSpec Spec(const std::string& tenant) {
  SessionSpec spec;
  spec.tenant = tenant;
  spec.graph = Linear();
  // W (24 bytes) and its momentum buffer (24 bytes).
  spec.optimizer = OptimizerConfig{SgdConfig{0.1, 0.9}, 0};
  return spec;
}

TEST(TenantQuotas, SessionsHoldTheirShareUntilClosedOrExpired) {
  ComputePool pool({1, 1}, 10);
  QuotaOptions options{{2, 0, 0}, {}};
  options.tenants["bytes"].bytes = 60;
  TenantQuotas quotas(options);
  SessionManager sessions(SessionOptions{}, &pool, &quotas);
  auto a = sessions.Create(Spec("alice"), Limits{});
  ASSERT_TRUE(a.ok()) << a.status();
  SessionSpec short_lived = Spec("alice");
  short_lived.ttl_seconds = 1;
  ASSERT_TRUE(sessions.Create(short_lived, Limits{}).ok());
  EXPECT_EQ(quotas.UseOf("alice").sessions, 2);
  EXPECT_EQ(quotas.UseOf("alice").bytes, 96);
  ExpectStatus(sessions.Create(Spec("alice"), Limits{}).status(),
               StatusCode::kResourceExhausted,
               {"tenant_max_sessions", "'alice'", "holds 2", "limit 2"});
  EXPECT_TRUE(sessions.Create(Spec("bob"), Limits{}).ok());  // unaffected
  ASSERT_TRUE(sessions.Create(Spec("bytes"), Limits{}).ok());
  ExpectStatus(
      sessions.Create(Spec("bytes"), Limits{}).status(),
      StatusCode::kResourceExhausted,
      {"tenant_max_bytes", "'bytes'", "holds 48 bytes", "limit 60", "48 more"});
  // A session still used by a call is given back when it leaves the
  // manager, not when its last user lets go.
  std::shared_ptr<Session> in_use = *a;
  ASSERT_TRUE(sessions.Close("alice", in_use->id()).ok());
  EXPECT_EQ(quotas.UseOf("alice").sessions, 1);
  sessions.Expire(absl::Now() + absl::Seconds(2));
  EXPECT_EQ(quotas.UseOf("alice").sessions, 0);
  EXPECT_EQ(quotas.UseOf("alice").bytes, 0);
  // Refused for the server's limits: nothing held either.
  SessionSpec bad = Spec("alice");
  bad.frozen = {"nope"};
  EXPECT_FALSE(sessions.Create(bad, Limits{}).ok());
  EXPECT_EQ(quotas.UseOf("alice").sessions, 0);
}

std::unique_ptr<Tape> ForwardTape() {
  const GraphDef g = Linear();
  ComputeArgs args;
  args.feeds["x"] = Tensor::Zeros(DType::kFloat32, {4, 3});
  args.loss = "L";
  auto index = GraphIndex::Build(g, Limits{});
  auto program = Program::Compile(*index, ProgramRequestFor(args), Limits{});
  ForwardResult result;
  return *Tape::Forward(*program, args.feeds, ValuesOf(g), {}, &result);
}

TEST(TenantQuotas, ActivationsHoldTheirBytesUntilReleasedOrExpired) {
  QuotaOptions options;
  options.tenants["alice"].bytes = 1000;
  TenantQuotas quotas(options);
  ActivationStore store({1, 3600, 1 << 20}, &quotas);
  auto claim = store.ClaimBytes("alice", 900);
  ASSERT_TRUE(claim.ok());
  ExpectStatus(store.ClaimBytes("alice", 101).status(),
               StatusCode::kResourceExhausted,
               {"Forward's activations", "tenant_max_bytes", "'alice'",
                "holds 900 bytes", "limit 1000"});
  EXPECT_TRUE(store.ClaimBytes("bob", 5000).ok());  // and back at once
  auto tape = ForwardTape();
  const int64_t bytes = tape->bytes();
  ASSERT_LT(bytes, 900);
  auto held = store.Put("alice", "", std::move(tape), 0, *std::move(claim));
  EXPECT_EQ(quotas.UseOf("alice").bytes, bytes);  // the actual size
  store.Release("alice", held.id);
  EXPECT_EQ(quotas.UseOf("alice").bytes, 0);
  {
    auto unused = store.ClaimBytes("alice", 1000);  // a Forward that failed
    ASSERT_TRUE(unused.ok());
  }
  EXPECT_EQ(quotas.UseOf("alice").bytes, 0);
  store.Put("alice", "", ForwardTape(), 0, *store.ClaimBytes("alice", 900));
  EXPECT_GT(quotas.UseOf("alice").bytes, 0);
  store.Expire(absl::Now() + absl::Seconds(2));
  EXPECT_EQ(quotas.tenants_holding(), 0);
}

}  // namespace
}  // namespace gradserve::runtime
