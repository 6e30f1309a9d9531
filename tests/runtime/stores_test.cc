// The runtime's stores: the memory budget, the activation store and the
// session manager (limits, TTL, tenants and their quota shares, given back
// on every path), and the ids they hand out.
#include <thread>

#include "absl/strings/match.h"
#include "core/compute.h"
#include "gtest/gtest.h"
#include "runtime/activations.h"
#include "runtime/ids.h"
#include "runtime/memory_budget.h"
#include "runtime/quotas.h"
#include "runtime/sessions.h"
#include "tests/status_testing.h"

namespace gradserve::runtime {
namespace {

using ::gradserve::testing::ExpectStatus;

TEST(MemoryBudget, ReservesUpToItsCapacityAndReleases) {
  MemoryBudget budget(100);
  auto a = budget.Reserve(60, "a");
  ASSERT_TRUE(a.ok());
  ExpectStatus(
      budget.Reserve(50, "the request").status(),
      absl::StatusCode::kResourceExhausted,
      {"the request needs 50 bytes", "hold 60", "of the server's 100"});
  a->Release();
  EXPECT_EQ(budget.in_use(), 0);
  {
    auto b = budget.Reserve(100, "b");
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(budget.in_use(), 100);
  }
  EXPECT_EQ(budget.in_use(), 0);  // released when destroyed
}

TEST(Ids, AreRandomUnderTheirRoute) {
  const std::string a = NewId("replica-7");
  const std::string b = NewId("replica-7");
  EXPECT_NE(a, b);
  EXPECT_EQ(RouteOf(a), "replica-7");
  EXPECT_EQ(a.size(), std::string("replica-7.").size() + 32);
  EXPECT_EQ(RouteOf(NewId("")).size(), 8u);
  EXPECT_TRUE(CheckRoute("a_B-9").ok());
  ExpectStatus(CheckRoute("a.b"), absl::StatusCode::kInvalidArgument,
               {"route"});
  ExpectStatus(CheckRoute(""), absl::StatusCode::kInvalidArgument, {"route"});
  ExpectStatus(CheckRoute(std::string(65, 'a')),
               absl::StatusCode::kInvalidArgument, {"1 to 64"});
}

GraphDef Linear() {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = Tensor::Zeros(DType::kFloat32, {2, 3});
  g.nodes = {{"fc", "Linear", {"x", "W"}, {"y"}, {}},
             {"sum", "Sum", {"y"}, {"L"}, {}}};
  return g;
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

TEST(ActivationStore, ClaimsCountAgainstTheLimitUntilPut) {
  ActivationStore store({300, 3600, 1000});
  auto claim = store.ClaimBytes("", 800);
  ASSERT_TRUE(claim.ok());
  ExpectStatus(store.ClaimBytes("", 300).status(),
               absl::StatusCode::kResourceExhausted,
               {"300 bytes", "800", "--max_activation_bytes"});
  auto tape = ForwardTape();
  const int64_t bytes = tape->bytes();
  auto held = store.Put("", "r", std::move(tape), 0, *std::move(claim));
  EXPECT_EQ(store.bytes_held(), bytes);  // the claim became the tape's size
  EXPECT_TRUE(absl::StartsWith(held.id, "r."));
  store.Release("", held.id);
  EXPECT_EQ(store.bytes_held(), 0);
  EXPECT_EQ(store.count(), 0);
}

TEST(ActivationStore, TenantsSeeOnlyTheirOwnAndTimeIsUp) {
  ActivationStore store({1, 3600, 1 << 20});
  auto held =
      store.Put("alice", "", ForwardTape(), 0, *store.ClaimBytes("alice", 0));
  EXPECT_TRUE(store.Find("alice", held.id).ok());
  ExpectStatus(store.Find("bob", held.id).status(), absl::StatusCode::kNotFound,
               {held.id});
  ExpectStatus(store.CheckTtl(3601), absl::StatusCode::kInvalidArgument,
               {"ttl_seconds", "3600"});
  store.Expire(absl::Now() + absl::Seconds(2));
  ExpectStatus(store.Find("alice", held.id).status(),
               absl::StatusCode::kNotFound, {held.id, "expired"});
  EXPECT_EQ(store.bytes_held(), 0);
}

TEST(ActivationStore, ActivationsHoldTheirBytesUntilReleasedOrExpired) {
  QuotaOptions options;
  options.tenants["alice"].bytes = 1000;
  TenantQuotas quotas(options);
  ActivationStore store({1, 3600, 1 << 20}, &quotas);
  auto claim = store.ClaimBytes("alice", 900);
  ASSERT_TRUE(claim.ok());
  ExpectStatus(store.ClaimBytes("alice", 101).status(),
               absl::StatusCode::kResourceExhausted,
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

SessionSpec Spec(const std::string& tenant) {
  SessionSpec spec;
  spec.tenant = tenant;
  spec.graph = Linear();
  spec.optimizer = OptimizerConfig{SgdConfig{0.1, 0.9}, 0};
  return spec;
}

TEST(SessionManager, LimitsSessionsAndBytes) {
  ComputePool pool({1, 1}, 10);
  SessionOptions options;
  options.max_sessions = 2;
  // Each session: W (24 bytes) and its momentum buffer (24 bytes).
  options.max_bytes = 100;
  SessionManager sessions(options, &pool);
  auto a = sessions.Create(Spec(""), Limits{});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(sessions.bytes_reserved(), 48);
  ASSERT_TRUE(sessions.Create(Spec(""), Limits{}).ok());
  ExpectStatus(sessions.Create(Spec(""), Limits{}).status(),
               absl::StatusCode::kResourceExhausted, {"--max_sessions"});
  ASSERT_TRUE(sessions.Close("", (*a)->id()).ok());
  SessionSpec big = Spec("");
  big.graph.parameters["W"] = Tensor::Zeros(DType::kFloat32, {2, 30});
  ExpectStatus(sessions.Create(big, Limits{}).status(),
               absl::StatusCode::kResourceExhausted,
               {"480 bytes", "--max_session_bytes"});
}

TEST(SessionManager, SessionsHoldTheirShareUntilClosedOrExpired) {
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
               absl::StatusCode::kResourceExhausted,
               {"tenant_max_sessions", "'alice'", "holds 2", "limit 2"});
  EXPECT_TRUE(sessions.Create(Spec("bob"), Limits{}).ok());  // unaffected
  ASSERT_TRUE(sessions.Create(Spec("bytes"), Limits{}).ok());
  ExpectStatus(
      sessions.Create(Spec("bytes"), Limits{}).status(),
      absl::StatusCode::kResourceExhausted,
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

TEST(SessionManager, TenantsTtlAndClose) {
  ComputePool pool({1, 1}, 10);
  SessionManager sessions(SessionOptions{}, &pool);
  SessionSpec spec = Spec("alice");
  spec.ttl_seconds = 1;
  auto s = sessions.Create(spec, Limits{});
  ASSERT_TRUE(s.ok());
  const std::string id = (*s)->id();
  EXPECT_TRUE(sessions.Find("alice", id).ok());
  ExpectStatus(sessions.Find("bob", id).status(), absl::StatusCode::kNotFound,
               {id});
  ExpectStatus(sessions.Close("bob", id), absl::StatusCode::kNotFound, {id});
  EXPECT_EQ(sessions.List("bob").size(), 0u);
  EXPECT_EQ(sessions.List("alice").size(), 1u);
  sessions.Expire(absl::Now() + absl::Seconds(2));
  ExpectStatus(sessions.Find("alice", id).status(), absl::StatusCode::kNotFound,
               {id, "expired"});
  ExpectStatus(sessions.Close("alice", id), absl::StatusCode::kNotFound, {id});
}

TEST(SessionManager, ChecksTheSpec) {
  ComputePool pool({1, 1}, 10);
  SessionManager sessions(SessionOptions{}, &pool);
  SessionSpec frozen = Spec("");
  frozen.frozen = {"x"};
  ExpectStatus(sessions.Create(frozen, Limits{}).status(),
               absl::StatusCode::kInvalidArgument,
               {"frozen", "'x' is not a parameter"});
  SessionSpec lr = Spec("");
  lr.optimizer = OptimizerConfig{SgdConfig{}, 0};
  ExpectStatus(sessions.Create(lr, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"lr"});
  SessionSpec ttl = Spec("");
  ttl.ttl_seconds = 100000000;
  ExpectStatus(sessions.Create(ttl, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"ttl_seconds"});
  SessionSpec route = Spec("");
  route.route = "no/slashes";
  ExpectStatus(sessions.Create(route, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"route"});
  route.route = "replica-2";
  auto s = sessions.Create(route, Limits{});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(RouteOf((*s)->id()), "replica-2");
}

}  // namespace
}  // namespace gradserve::runtime
