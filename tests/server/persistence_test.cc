// Sessions in a state directory: the snapshot codec's round trip, and the
// runtime's snapshots and restore (atomic files, set-aside bad files,
// deleted files of closed and expired sessions).
#include "runtime/persistence.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/codec/snapshot_codec.h"
#include "tests/status_testing.h"

namespace gradserve {
namespace {

namespace fs = std::filesystem;
using ::gradserve::testing::ExpectStatus;
using runtime::SessionManager;
using runtime::SessionPersistence;
using runtime::SessionSpec;

Tensor Floats(Shape shape, float first) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = first + 0.25f * i;
  return Tensor::FromValues<float>(shape, absl::MakeConstSpan(values));
}

void ExpectSameTensors(const std::map<std::string, Tensor>& got,
                       const std::map<std::string, Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << name;
    ASSERT_TRUE(it->second.meta() == t.meta()) << name;
    EXPECT_EQ(std::memcmp(it->second.raw_data(), t.raw_data(), t.num_bytes()),
              0)
        << name;
  }
}

// y = Linear(x, W, b): W [2, 3], b [2].
GraphDef LinearGraph() {
  GraphDef g;
  NodeDef fc;
  fc.name = "fc";
  fc.op = "Linear";
  fc.inputs = {"x", "W", "b"};
  fc.outputs = {"y"};
  g.nodes.push_back(fc);
  g.inputs = {"x"};
  g.outputs = {"y"};
  g.parameters["W"] = Floats({2, 3}, 0.5f);
  g.parameters["b"] = Floats({2}, -1.0f);
  return g;
}

OptimizerConfig Adam() {
  AdamConfig adam;
  adam.lr = 0.003;
  adam.beta1 = 0.8;
  adam.beta2 = 0.99;
  adam.eps = 1e-6;
  adam.weight_decay = 0.05;
  adam.amsgrad = true;
  adam.decoupled_weight_decay = true;
  return OptimizerConfig{adam, 2.5};
}

TEST(SnapshotCodec, RoundTripsEverySessionField) {
  SessionSpec spec;
  spec.id = "route-1.0123456789abcdef0123456789abcdef";
  spec.tenant = "team-a";
  spec.label = "resnet, run 3";
  spec.ttl_seconds = 600;
  spec.graph = LinearGraph();
  spec.graph.nodes[0].attributes = {
      {"i", AttrValue(int64_t{7})},
      {"f", AttrValue(0.1)},
      {"s", AttrValue(std::string("mean"))},
      {"ints", AttrValue(std::vector<int64_t>{1, 2, 3})},
      {"floats", AttrValue(std::vector<double>{0.5, -2.0})}};
  spec.graph.buffers["running_mean"] = Floats({3}, 2.0f);
  const std::vector<int64_t> count = {1, 9};
  spec.graph.buffers["count"] =
      Tensor::FromValues<int64_t>({2}, absl::MakeConstSpan(count));
  spec.optimizer = Adam();
  spec.frozen = {"b"};
  spec.optimizer_state = {{"W/exp_avg", Floats({2, 3}, 1e-3f)},
                          {"W/exp_avg_sq", Floats({2, 3}, 1e-6f)},
                          {"W/max_exp_avg_sq", Floats({2, 3}, 2e-6f)}};
  spec.step = 41;

  server::SnapshotCodec codec{Limits{}};
  auto bytes = codec.Encode(spec);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto back = codec.Decode(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, spec.id);
  EXPECT_EQ(back->tenant, spec.tenant);
  EXPECT_EQ(back->label, spec.label);
  EXPECT_EQ(back->ttl_seconds, 600u);
  ASSERT_EQ(back->graph.nodes.size(), 1u);
  const NodeDef& node = back->graph.nodes[0];
  EXPECT_EQ(node.name, "fc");
  EXPECT_EQ(node.op, "Linear");
  EXPECT_EQ(node.inputs, spec.graph.nodes[0].inputs);
  EXPECT_EQ(node.outputs, spec.graph.nodes[0].outputs);
  EXPECT_TRUE(node.attributes == spec.graph.nodes[0].attributes);
  EXPECT_EQ(back->graph.inputs, spec.graph.inputs);
  EXPECT_EQ(back->graph.outputs, spec.graph.outputs);
  ExpectSameTensors(back->graph.parameters, spec.graph.parameters);
  ExpectSameTensors(back->graph.buffers, spec.graph.buffers);
  ASSERT_TRUE(back->optimizer.has_value());
  EXPECT_EQ(back->optimizer->max_grad_norm, 2.5);
  const auto& adam = std::get<AdamConfig>(back->optimizer->kind);
  EXPECT_EQ(adam.lr, 0.003);
  EXPECT_EQ(adam.beta1, 0.8);
  EXPECT_EQ(adam.beta2, 0.99);
  EXPECT_EQ(adam.eps, 1e-6);
  EXPECT_EQ(adam.weight_decay, 0.05);
  EXPECT_TRUE(adam.amsgrad);
  EXPECT_TRUE(adam.decoupled_weight_decay);
  EXPECT_EQ(back->frozen, spec.frozen);
  ExpectSameTensors(back->optimizer_state, spec.optimizer_state);
  EXPECT_EQ(back->step, 41);
}

TEST(SnapshotCodec, RoundTripsSgdAndNoOptimizer) {
  server::SnapshotCodec codec{Limits{}};
  SessionSpec spec;
  spec.id = "a.b";
  spec.graph = LinearGraph();
  auto none = codec.Decode(*codec.Encode(spec));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->optimizer.has_value());

  spec.optimizer = OptimizerConfig{SgdConfig{0.1, 0.9, 0.0, 1e-4, true}, 0};
  auto sgd = codec.Decode(*codec.Encode(spec));
  ASSERT_TRUE(sgd.ok()) << sgd.status();
  const auto& s = std::get<SgdConfig>(sgd->optimizer->kind);
  EXPECT_EQ(s.lr, 0.1);
  EXPECT_EQ(s.momentum, 0.9);
  EXPECT_EQ(s.weight_decay, 1e-4);
  EXPECT_TRUE(s.nesterov);
}

TEST(SnapshotCodec, RefusesWhatIsNoSnapshotOfThisVersion) {
  server::SnapshotCodec codec{Limits{}};
  ExpectStatus(codec.Decode("not a snapshot").status(),
               absl::StatusCode::kDataLoss, {"SessionSnapshot"});
  server::pb::SessionSnapshot later;
  later.set_format_version(2);
  later.set_session_id("a.b");
  ExpectStatus(codec.Decode(later.SerializeAsString()).status(),
               absl::StatusCode::kDataLoss, {"format_version 2", "reads 1"});
  SessionSpec spec;
  spec.id = "a.b";
  spec.graph = LinearGraph();
  std::string bytes = *codec.Encode(spec);
  EXPECT_FALSE(codec.Decode(bytes.substr(0, bytes.size() / 2)).ok());
}

class PersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "persistence_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    codec_ = std::make_shared<server::SnapshotCodec>(Limits{});
    manager_ = NewManager();
  }
  void TearDown() override {
    persistence_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<SessionManager> NewManager(
      runtime::SessionOptions options = {}) {
    return std::make_unique<SessionManager>(options, &pool_);
  }
  std::unique_ptr<SessionPersistence> Open(SessionManager* manager) {
    auto p = SessionPersistence::Open({dir_, absl::Seconds(30)}, codec_,
                                      manager, Limits{});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }
  // A restart: a new manager (and persistence) over the same directory.
  runtime::RestoreReport Restart(runtime::SessionOptions options = {}) {
    persistence_.reset();
    manager_ = NewManager(options);
    persistence_ = Open(manager_.get());
    return persistence_->Restore();
  }

  std::shared_ptr<runtime::Session> Create(const std::string& label,
                                           uint32_t ttl_seconds = 0) {
    SessionSpec spec;
    spec.tenant = "t";
    spec.label = label;
    spec.graph = LinearGraph();
    spec.optimizer = Adam();
    spec.frozen = {"b"};
    spec.ttl_seconds = ttl_seconds;
    auto session = manager_->Create(spec, Limits{});
    EXPECT_TRUE(session.ok()) << session.status();
    return *session;
  }
  // What a TrainStep publishes: new W, state and step, the next version.
  static void Train(runtime::Session& session, float w) {
    auto next = std::make_shared<ValueSet>(*session.values());
    next->parameters["W"] = Floats({2, 3}, w);
    next->optimizer_state["W/exp_avg"] = Floats({2, 3}, w / 10);
    next->optimizer_state["W/exp_avg_sq"] = Floats({2, 3}, w / 100);
    next->step += 1;
    next->version += 1;
    session.Publish(std::move(next));
  }
  std::string PathOf(const std::string& id) const {
    return dir_ + "/" + id + ".session";
  }
  static void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string Encode(const runtime::Session& session) const {
    return *codec_->Encode(runtime::SpecOf(session, *session.values()));
  }
  void ExpectRestored(const runtime::Session& original) {
    auto restored = manager_->Find(original.tenant(), original.id());
    ASSERT_TRUE(restored.ok()) << restored.status();
    const auto& got = *(*restored)->values();
    const auto& want = *original.values();
    ExpectSameTensors(got.parameters, want.parameters);
    ExpectSameTensors(got.buffers, want.buffers);
    ExpectSameTensors(got.optimizer_state, want.optimizer_state);
    EXPECT_EQ(got.step, want.step);
    EXPECT_EQ((*restored)->label(), original.label());
    EXPECT_EQ((*restored)->frozen(), original.frozen());
    EXPECT_EQ((*restored)->trained(), original.trained());
    EXPECT_EQ((*restored)->ttl_seconds(), original.ttl_seconds());
    EXPECT_EQ(std::get<AdamConfig>((*restored)->optimizer()->kind).beta2, 0.99);
  }

  std::string dir_;
  runtime::ComputePool pool_{{1, 1}, 16};
  std::shared_ptr<server::SnapshotCodec> codec_;
  std::unique_ptr<SessionManager> manager_;
  std::unique_ptr<SessionPersistence> persistence_;
};

TEST_F(PersistenceTest, RestoredSessionsHaveTheirValuesStateAndStep) {
  persistence_ = Open(manager_.get());
  auto a = Create("a");
  auto b = Create("b", 120);
  Train(*a, 3.0f);
  Train(*a, 4.0f);
  EXPECT_EQ(persistence_->Snapshot().written, 2);
  EXPECT_EQ(persistence_->Snapshot().written, 0);  // nothing changed
  Train(*b, 5.0f);
  EXPECT_EQ(persistence_->Snapshot().written, 1);  // only b changed

  const runtime::RestoreReport report = Restart();
  EXPECT_EQ(report.restored, 2);
  EXPECT_EQ(report.set_aside, 0);
  ExpectRestored(*a);
  ExpectRestored(*b);
  // Restored sessions are as their files: no rewrite until they change.
  EXPECT_EQ(persistence_->Snapshot().written, 0);
}

TEST_F(PersistenceTest, ExpiryRestartsFromTheRestore) {
  persistence_ = Open(manager_.get());
  auto a = Create("a", 100);
  persistence_->Snapshot();
  const absl::Time before = absl::Now();
  Restart();
  auto restored = manager_->Find("t", a->id());
  ASSERT_TRUE(restored.ok());
  EXPECT_GE((*restored)->expires(), before + absl::Seconds(100));
}

TEST_F(PersistenceTest, AWriteCutShortLeavesTheOldFile) {
  persistence_ = Open(manager_.get());
  auto a = Create("a");
  Train(*a, 3.0f);
  persistence_->Snapshot();
  const std::string old_file = ReadFile(PathOf(a->id()));
  // A crash after writing the next snapshot but before its rename: the
  // temporary file is whole, or torn; either way it is not restored.
  auto kept = std::make_shared<ValueSet>(*a->values());
  Train(*a, 4.0f);
  const std::string next = Encode(*a);
  WriteFile(PathOf(a->id()) + ".tmp", next);
  WriteFile(dir_ + "/new.session.tmp", next.substr(0, next.size() / 3));
  EXPECT_EQ(ReadFile(PathOf(a->id())), old_file);
  a->Publish(kept);  // what the file holds

  const runtime::RestoreReport report = Restart();
  EXPECT_EQ(report.restored, 1);
  EXPECT_EQ(report.temp_removed, 2);
  ExpectRestored(*a);
  EXPECT_FALSE(fs::exists(PathOf(a->id()) + ".tmp"));
  EXPECT_FALSE(fs::exists(dir_ + "/new.session.tmp"));
  EXPECT_FALSE(manager_->Contains("new"));
}

TEST_F(PersistenceTest, ABadFileIsSetAsideAndTheOthersRestore) {
  persistence_ = Open(manager_.get());
  auto a = Create("a");
  auto b = Create("b");
  Train(*b, 2.0f);
  persistence_->Snapshot();
  WriteFile(dir_ + "/garbage.session", "not a snapshot");
  const std::string a_bytes = ReadFile(PathOf(a->id()));
  WriteFile(dir_ + "/torn.session", a_bytes.substr(0, a_bytes.size() / 2));
  WriteFile(dir_ + "/renamed.session", a_bytes);  // holds a's id

  const runtime::RestoreReport report = Restart();
  EXPECT_EQ(report.restored, 2);
  EXPECT_EQ(report.set_aside, 3);
  ExpectRestored(*a);
  ExpectRestored(*b);
  for (const char* name : {"garbage", "torn", "renamed"}) {
    EXPECT_TRUE(fs::exists(dir_ + "/" + name + ".session.corrupt")) << name;
    EXPECT_FALSE(fs::exists(dir_ + "/" + name + ".session")) << name;
  }
  // Set aside, they are not read again.
  EXPECT_EQ(Restart().set_aside, 0);
}

TEST_F(PersistenceTest, FilesOverTheServersLimitsAreKeptAsRejected) {
  persistence_ = Open(manager_.get());
  Create("a");
  Create("b");
  persistence_->Snapshot();
  runtime::SessionOptions one;
  one.max_sessions = 1;
  const runtime::RestoreReport report = Restart(one);
  EXPECT_EQ(report.restored, 1);
  EXPECT_EQ(report.set_aside, 1);
  int rejected = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    rejected += entry.path().extension() == ".rejected";
  }
  EXPECT_EQ(rejected, 1);
}

TEST_F(PersistenceTest, ClosedAndExpiredSessionsLoseTheirFiles) {
  persistence_ = Open(manager_.get());
  auto closed = Create("closed");
  auto expired = Create("expired", 1);
  auto kept = Create("kept");
  persistence_->Snapshot();
  ASSERT_TRUE(fs::exists(PathOf(closed->id())));

  ASSERT_TRUE(manager_->Close("t", closed->id()).ok());
  persistence_->Forget(closed->id());
  EXPECT_FALSE(fs::exists(PathOf(closed->id())));  // at once
  manager_->Expire(absl::Now() + absl::Seconds(2));
  EXPECT_EQ(manager_->count(), 1);
  const runtime::SnapshotReport report = persistence_->Snapshot();
  EXPECT_EQ(report.deleted, 2);
  EXPECT_FALSE(fs::exists(PathOf(closed->id())));
  EXPECT_FALSE(fs::exists(PathOf(expired->id())));

  EXPECT_EQ(Restart().restored, 1);
  EXPECT_TRUE(manager_->Contains(kept->id()));
}

TEST_F(PersistenceTest, TheSnapshotThreadWritesChangedSessions) {
  auto p = SessionPersistence::Open({dir_, absl::Milliseconds(20)}, codec_,
                                    manager_.get(), Limits{});
  ASSERT_TRUE(p.ok()) << p.status();
  persistence_ = *std::move(p);
  persistence_->Start();
  auto a = Create("a");
  Train(*a, 7.0f);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    auto spec = codec_->Decode(ReadFile(PathOf(a->id())));
    if (spec.ok() && spec->step == 1) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  persistence_->StopAndSnapshot();
  auto spec = codec_->Decode(ReadFile(PathOf(a->id())));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->step, 1);
}

TEST_F(PersistenceTest, OneServerADirectory) {
  persistence_ = Open(manager_.get());
  auto other = NewManager();
  ExpectStatus(SessionPersistence::Open({dir_, absl::Seconds(30)}, codec_,
                                        other.get(), Limits{})
                   .status(),
               absl::StatusCode::kFailedPrecondition, {dir_, "in use"});
}

}  // namespace
}  // namespace gradserve
