// The server in-process on a loopback port, through the generated service.
#include "server/server.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "gradserve/v1/gradient_service.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/codec/tensor_codec.h"
#include "server/rpc.h"

namespace gradserve::server {
namespace {

pb::Tensor Floats(std::vector<int64_t> shape, float value) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(n, value);
  t.set_data(v.data(), v.size() * sizeof(float));
  return t;
}

// A chain of `depth` Linear layers of width `width` on x [batch, width].
pb::ComputeRequest Chain(int depth, int64_t width, int64_t batch) {
  pb::ComputeRequest r;
  pb::Graph* g = r.mutable_graph();
  g->add_inputs("x");
  (*g->mutable_parameters())["W"] = Floats({width, width}, 1.0f / width);
  std::string prev = "x";
  for (int i = 0; i < depth; ++i) {
    pb::Node* n = g->add_nodes();
    n->set_name("fc" + std::to_string(i));
    n->set_op("Linear");
    n->add_inputs(prev);
    n->add_inputs("W");
    prev = "h" + std::to_string(i);
    n->add_outputs(prev);
  }
  (*r.mutable_feeds())["x"] = Floats({batch, width}, 1.0f);
  r.add_fetch(prev);
  return r;
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    options.address = "127.0.0.1:0";
    auto server = GradientServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
    service_ = pb::GradientService::NewStub(channel_);
  }

  grpc::Status Compute(
      const pb::ComputeRequest& r, pb::ComputeResponse* out,
      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    return service_->Compute(&ctx, r, out);
  }

  std::unique_ptr<GradientServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::GradientService::Stub> service_;
};

TEST(PoolShape, DefaultsFitTheCpus) {
  EXPECT_EQ(runtime::ChoosePoolShape({0, 0}, 2).workers, 1);
  EXPECT_EQ(runtime::ChoosePoolShape({0, 0}, 2).threads_per_worker, 2);
  EXPECT_EQ(runtime::ChoosePoolShape({0, 0}, 16).workers, 4);
  EXPECT_EQ(runtime::ChoosePoolShape({0, 0}, 16).threads_per_worker, 4);
  EXPECT_EQ(runtime::ChoosePoolShape({0, 0}, 1).workers, 1);
  EXPECT_EQ(runtime::ChoosePoolShape({8, 0}, 16).threads_per_worker, 2);
  EXPECT_EQ(runtime::ChoosePoolShape({0, 1}, 16).workers, 16);
  EXPECT_EQ(runtime::ChoosePoolShape({3, 5}, 2).workers, 3);  // as asked
}

TEST(ComputePool, RefusesWorkBeyondTheQueue) {
  runtime::ComputePool pool({1, 1}, 1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ran{0};
  auto blocker = [&] {
    released.wait();
    ++ran;
  };
  ASSERT_TRUE(pool.Submit(blocker));   // runs
  ASSERT_TRUE(pool.Submit(blocker));   // waits in the queue
  EXPECT_FALSE(pool.Submit(blocker));  // beyond max_queue
  release.set_value();
  while (ran.load() < 2) std::this_thread::yield();
  EXPECT_TRUE(pool.Submit([&] { ++ran; }));
}

TEST_F(ServerTest, ComputesAndReportsHealthAndInfo) {
  Start();
  pb::ComputeResponse out;
  pb::ComputeRequest r = Chain(2, 4, 3);
  (*r.mutable_output_gradients())["h1"] = Floats({3, 4}, 1.0f);
  r.add_wrt("W");
  ASSERT_TRUE(Compute(r, &out).ok());
  ASSERT_EQ(out.outputs().count("h1"), 1u);
  ASSERT_EQ(out.gradients().count("W"), 1u);
  const pb::Tensor& h = out.outputs().at("h1");
  EXPECT_EQ(h.dtype(), pb::DATA_TYPE_FLOAT32);
  EXPECT_EQ(h.data().size(), 3 * 4 * sizeof(float));
  float first;
  std::memcpy(&first, h.data().data(), sizeof(first));
  EXPECT_FLOAT_EQ(first, 1.0f);  // (1/4 · 4)(1/4 · 4)

  grpc::ClientContext ctx;
  pb::GetServerInfoResponse info;
  ASSERT_TRUE(service_->GetServerInfo(&ctx, {}, &info).ok());
  EXPECT_FALSE(info.version().empty());
  EXPECT_FALSE(info.onednn_version().empty());
  EXPECT_GE(info.workers(), 1);
  bool linear = false;
  for (const pb::OpInfo& op : info.ops()) {
    if (op.name() != "Linear") continue;
    linear = true;
    ASSERT_EQ(op.inputs_size(), 3);
    EXPECT_EQ(op.inputs(1).name(), "weight");
    EXPECT_TRUE(op.inputs(2).optional());
  }
  EXPECT_TRUE(linear);
  EXPECT_EQ(info.limits().max_graph_nodes(), Limits{}.max_graph_nodes);

  grpc::ClientContext dctx;
  pb::DescribeRequest d;
  *d.mutable_graph() = Chain(3, 8, 1).graph();
  (*d.mutable_input_shapes())["x"].add_dims(5);
  (*d.mutable_input_shapes())["x"].add_dims(8);
  pb::DescribeResponse summary;
  ASSERT_TRUE(service_->Describe(&dctx, d, &summary).ok());
  ASSERT_EQ(summary.nodes_size(), 3);
  EXPECT_EQ(summary.total_parameters(), 64);
  EXPECT_EQ(summary.forward_flops(), 3 * 2 * 5 * 8 * 8);
}

TEST_F(ServerTest, MalformedRequestsGetStatusesAndTheServerGoesOn) {
  Start();
  pb::ComputeRequest bad = Chain(1, 4, 2);
  (*bad.mutable_feeds())["x"].set_data("short");
  pb::ComputeResponse out;
  grpc::Status s = Compute(bad, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("feeds['x']"), std::string::npos)
      << s.error_message();
  ASSERT_TRUE(Compute(Chain(1, 4, 2), &out).ok());
}

TEST_F(ServerTest, ConfiguredLimitsApply) {
  ServerOptions options;
  options.runtime.limits.max_graph_nodes = 3;
  options.runtime.limits.max_tensor_elements = 100;
  Start(options);
  pb::ComputeResponse out;
  grpc::Status s = Compute(Chain(4, 2, 1), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("limit of 3"), std::string::npos);
  s = Compute(Chain(1, 20, 1), &out);  // W has 400 elements
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("graph.parameters['W']"), std::string::npos)
      << s.error_message();
}

TEST_F(ServerTest, DeadlineIsHonouredBetweenNodes) {
  Start();
  // 400 layers of 512x512 on a batch of 256: far longer than 50 ms.
  pb::ComputeResponse out;
  grpc::Status s =
      Compute(Chain(400, 512, 256), &out, std::chrono::milliseconds(50));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(Compute(Chain(1, 4, 2), &out).ok());
}

TEST_F(ServerTest, ShutdownLetsCallsInFlightFinish) {
  Start();
  // About 130 GFLOP: seconds of work, so the call is still running when
  // shutdown begins (asserted below, not assumed).
  pb::ComputeRequest slow = Chain(1000, 512, 256);
  std::atomic<bool> shutdown_began{false};
  bool finished_after_shutdown_began = false;
  grpc::Status status;
  ASSERT_TRUE(channel_->WaitForConnected(std::chrono::system_clock::now() +
                                         std::chrono::seconds(10)));
  std::thread caller([&] {
    pb::ComputeResponse out;
    status = Compute(slow, &out, std::chrono::seconds(300));
    finished_after_shutdown_began = shutdown_began.load();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  shutdown_began = true;
  server_->Shutdown(absl::Seconds(300));
  caller.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(finished_after_shutdown_began);
  // No new calls are taken.
  pb::ComputeResponse out;
  EXPECT_FALSE(Compute(Chain(1, 4, 2), &out, std::chrono::seconds(2)).ok());
}

// Calls through a balancer carry the gradserve-route metadata; new
// session and activation ids start with it, so a balancer hashing on it
// sends every later call of the object to this replica.
class RouteTest : public ServerTest {
 protected:
  void SetUp() override { Start(); }

  static void Route(grpc::ClientContext* ctx, const std::string& route) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(60));
    if (!route.empty()) ctx->AddMetadata(kRouteMetadata, route);
  }

  grpc::Status CreateSession(const std::string& route, std::string* id) {
    grpc::ClientContext ctx;
    Route(&ctx, route);
    pb::CreateSessionRequest r;
    *r.mutable_graph() = Chain(1, 4, 2).graph();
    pb::CreateSessionResponse out;
    grpc::Status s = service_->CreateSession(&ctx, r, &out);
    *id = out.session().session_id();
    return s;
  }

  grpc::Status Forward(const std::string& route, pb::ForwardRequest r,
                       std::string* id) {
    grpc::ClientContext ctx;
    Route(&ctx, route);
    pb::ForwardResponse out;
    grpc::Status s = service_->Forward(&ctx, r, &out);
    *id = out.activation_id();
    return s;
  }

  static pb::ForwardRequest ForwardOnGraph() {
    pb::ComputeRequest c = Chain(1, 4, 2);
    pb::ForwardRequest r;
    *r.mutable_graph() = c.graph();
    *r.mutable_feeds() = c.feeds();
    r.add_fetch("h0");
    return r;
  }
};

// "<route>.<32 lowercase hex digits>"
::testing::AssertionResult IdUnder(const std::string& route,
                                   const std::string& id) {
  const std::string prefix = route + ".";
  bool ok = absl::StartsWith(id, prefix) && id.size() == prefix.size() + 32;
  for (size_t i = prefix.size(); ok && i < id.size(); ++i) {
    ok = absl::ascii_isxdigit(id[i]) && !absl::ascii_isupper(id[i]);
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << id << "' is not '" << route << ".' and 32 hex digits";
}

TEST_F(RouteTest, NewSessionIdsStartWithTheRoute) {
  std::string id;
  ASSERT_TRUE(CreateSession("replica_7-b", &id).ok());
  EXPECT_TRUE(IdUnder("replica_7-b", id));
  const std::string longest(64, 'r');
  ASSERT_TRUE(CreateSession(longest, &id).ok());
  EXPECT_TRUE(IdUnder(longest, id));
  // Without the metadata the server draws a route: 8 hex digits.
  ASSERT_TRUE(CreateSession("", &id).ok());
  ASSERT_GT(id.size(), 9u);
  EXPECT_TRUE(IdUnder(id.substr(0, 8), id));
  for (char c : id.substr(0, 8)) EXPECT_TRUE(absl::ascii_isxdigit(c)) << id;
}

TEST_F(RouteTest, NewActivationIdsStartWithTheRoute) {
  std::string activation;
  ASSERT_TRUE(Forward("fwd-3", ForwardOnGraph(), &activation).ok());
  EXPECT_TRUE(IdUnder("fwd-3", activation));
  // The route gets to the activation's replica: Backward finds it.
  grpc::ClientContext ctx;
  Route(&ctx, "fwd-3");
  pb::BackwardRequest b;
  b.set_activation_id(activation);
  (*b.mutable_output_gradients())["h0"] = Floats({2, 4}, 1.0f);
  pb::BackwardResponse grads;
  grpc::Status s = service_->Backward(&ctx, b, &grads);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(grads.gradients().count("W"), 1u);
  // A Forward on a session keeps the session's route, whatever is sent.
  std::string session;
  ASSERT_TRUE(CreateSession("sess-1", &session).ok());
  pb::ForwardRequest on_session = ForwardOnGraph();
  on_session.set_session_id(session);
  ASSERT_TRUE(Forward("sess-1", on_session, &activation).ok());
  EXPECT_TRUE(IdUnder("sess-1", activation));
  ASSERT_TRUE(Forward("", on_session, &activation).ok());
  EXPECT_TRUE(IdUnder("sess-1", activation));
}

TEST_F(RouteTest, BadRoutesAreRefusedNamingThem) {
  for (const std::string& bad :
       {std::string("a.b"), std::string("a/b"), std::string(65, 'r')}) {
    std::string id;
    grpc::Status s = CreateSession(bad, &id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("route '" + bad.substr(0, 20)),
              std::string::npos)
        << s.error_message();
    s = Forward(bad, ForwardOnGraph(), &id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("route '" + bad.substr(0, 20)),
              std::string::npos)
        << s.error_message();
  }
}

TEST(GradientServer, ReportsAnAddressItCannotBind) {
  ServerOptions options;
  options.address = "203.0.113.1:1";  // TEST-NET-3: not an address of this host
  auto server = GradientServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(server.status().message().find("203.0.113.1:1"), std::string::npos);
}

}  // namespace
}  // namespace gradserve::server
