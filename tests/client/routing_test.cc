// Session and activation calls over three servers reach the one that holds
// the object: rendezvous hashing of the route over a listed target, the
// route metadata over a single address.
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "server/rpc.h"
#include "server/server.h"
#include "tests/status_testing.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

TEST(Routes, ClientAndServerAgreeOnTheMetadataKey) {
  EXPECT_STREQ(kRouteMetadata, server::kRouteMetadata);
}

TEST(Routes, RouteOfAnIdIsWhatPrecedesTheLastDot) {
  EXPECT_EQ(RouteOfId("team-a.0123456789abcdef0123456789abcdef"), "team-a");
  EXPECT_EQ(RouteOfId("no-dot"), "");
  EXPECT_EQ(RouteOfId(""), "");
}

TEST(Routes, RendezvousHashingSpreadsAndMovesLittle) {
  const std::vector<std::string> three = {"10.0.0.1:50051", "10.0.0.2:50051",
                                          "10.0.0.3:50051"};
  const std::vector<std::string> reordered = {three[2], three[0], three[1]};
  const std::vector<std::string> two = {three[0], three[2]};
  std::map<std::string, int> load;
  for (int i = 0; i < 600; ++i) {
    const std::string route = "r" + std::to_string(i);
    const std::string& owner = three[ReplicaFor(route, three)];
    ++load[owner];
    // Any order of the same set picks the same address.
    EXPECT_EQ(reordered[ReplicaFor(route, reordered)], owner) << route;
    // Without three[1], only its routes move.
    if (owner != three[1]) {
      EXPECT_EQ(two[ReplicaFor(route, two)], owner) << route;
    }
  }
  for (const std::string& address : three) {
    EXPECT_GT(load[address], 150) << address;  // 200 expected
  }
  EXPECT_EQ(ReplicaFor("anything", {"10.0.0.9:1"}), 0u);
}

pb::Tensor Floats(std::vector<int64_t> shape, std::vector<float> values) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  t.set_data(values.data(), values.size() * sizeof(float));
  return t;
}

// y = x·Wᵀ, loss = MSE(y, t), on x [2, 2].
pb::Graph Regression() {
  pb::Graph g;
  g.add_inputs("x");
  g.add_inputs("t");
  (*g.mutable_parameters())["W"] = Floats({1, 2}, {0.5f, -0.5f});
  pb::Node* fc = g.add_nodes();
  fc->set_name("fc");
  fc->set_op("Linear");
  fc->add_inputs("x");
  fc->add_inputs("W");
  fc->add_outputs("y");
  pb::Node* mse = g.add_nodes();
  mse->set_name("mse");
  mse->set_op("MSELoss");
  mse->add_inputs("y");
  mse->add_inputs("t");
  mse->add_outputs("loss");
  g.add_outputs("y");
  return g;
}

google::protobuf::Map<std::string, pb::Tensor> Feeds() {
  google::protobuf::Map<std::string, pb::Tensor> feeds;
  feeds["x"] = Floats({2, 2}, {1, 2, 3, 4});
  feeds["t"] = Floats({2, 1}, {1, 2});
  return feeds;
}

pb::CreateSessionRequest NewSession() {
  pb::CreateSessionRequest r;
  *r.mutable_graph() = Regression();
  r.mutable_optimizer()->mutable_sgd()->set_lr(0.01);
  return r;
}

pb::TrainStepRequest Step(const std::string& session) {
  pb::TrainStepRequest r;
  r.set_session_id(session);
  *r.mutable_feeds() = Feeds();
  r.set_loss("loss");
  return r;
}

pb::ForwardRequest ForwardOf(const std::string& session) {
  pb::ForwardRequest r;
  if (session.empty()) {
    *r.mutable_graph() = Regression();
  } else {
    r.set_session_id(session);
  }
  *r.mutable_feeds() = Feeds();
  r.set_loss("loss");
  return r;
}

class ThreeServers : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      server::ServerOptions options;
      options.address = "127.0.0.1:0";
      auto started = server::GradientServer::Start(options);
      ASSERT_TRUE(started.ok()) << started.status();
      servers_.push_back(std::move(*started));
      addresses_.push_back("127.0.0.1:" +
                           std::to_string(servers_.back()->port()));
      direct_.push_back(Connect(addresses_.back()));
    }
    client_ =
        Connect(addresses_[0] + "," + addresses_[1] + "," + addresses_[2]);
  }

  static std::unique_ptr<Client> Connect(const std::string& target) {
    ClientOptions options;
    options.target = target;
    auto client = Client::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // Which servers list `session` (asked each one directly).
  std::vector<int> Holders(const std::string& session) {
    std::vector<int> holders;
    for (int i = 0; i < 3; ++i) {
      auto listed = direct_[i]->ListSessions();
      EXPECT_TRUE(listed.ok()) << listed.status();
      if (!listed.ok()) continue;
      for (const auto& info : listed->sessions()) {
        if (info.session_id() == session) holders.push_back(i);
      }
    }
    return holders;
  }

  std::vector<std::unique_ptr<server::GradientServer>> servers_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<Client>> direct_;  // one per server
  std::unique_ptr<Client> client_;               // over all three
};

TEST_F(ThreeServers, SessionCallsReachTheSessionsServer) {
  std::set<int> used;
  std::vector<std::string> sessions;
  for (int s = 0; s < 9; ++s) {
    auto created = client_->CreateSession(NewSession());
    ASSERT_TRUE(created.ok()) << created.status();
    const std::string id = created->session().session_id();
    sessions.push_back(id);
    const std::vector<int> holders = Holders(id);
    ASSERT_EQ(holders.size(), 1u) << id;
    used.insert(holders[0]);
    // The other two do not have it: a call there is NOT_FOUND.
    for (int i = 0; i < 3; ++i) {
      if (i == holders[0]) continue;
      testing::ExpectStatus(direct_[i]->TrainStep(Step(id)).status(),
                            absl::StatusCode::kNotFound, {id});
    }
    double first_loss = 0;
    for (int step = 1; step <= 10; ++step) {
      auto stepped = client_->TrainStep(Step(id));
      ASSERT_TRUE(stepped.ok())
          << id << " step " << step << ": " << stepped.status();
      EXPECT_EQ(stepped->step(), step);
      float loss;
      ASSERT_EQ(stepped->loss().data().size(), sizeof(loss));
      std::memcpy(&loss, stepped->loss().data().data(), sizeof(loss));
      if (step == 1) first_loss = loss;
      if (step == 10) {
        EXPECT_LT(loss, first_loss) << id;
      }
    }
    pb::GetParametersRequest get;
    get.set_session_id(id);
    auto parameters = client_->GetParameters(get);
    ASSERT_TRUE(parameters.ok()) << parameters.status();
    EXPECT_EQ(parameters->step(), 10);
    pb::SetParametersRequest set;
    set.set_session_id(id);
    set.set_step(3);
    auto reset = client_->SetParameters(set);
    ASSERT_TRUE(reset.ok()) << reset.status();
    EXPECT_EQ(reset->session().step(), 3);
    pb::ComputeRequest compute;
    compute.set_session_id(id);
    *compute.mutable_feeds() = Feeds();
    compute.add_fetch("loss");
    ASSERT_TRUE(client_->Compute(compute).ok()) << id;
    pb::DescribeRequest describe;
    describe.set_session_id(id);
    for (const auto& [name, feed] : Feeds()) {
      (*describe.mutable_input_shapes())[name].mutable_dims()->Assign(
          feed.shape().begin(), feed.shape().end());
    }
    auto described = client_->Describe(describe);
    ASSERT_TRUE(described.ok()) << described.status();
    EXPECT_EQ(described->total_parameters(), 2);
  }
  // 9 drawn routes all on one server of three: 3 · 3^-9, about 1.5e-4.
  EXPECT_GT(used.size(), 1u);
  auto listed = client_->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sessions_size(), 9);
  for (const std::string& id : sessions) {
    pb::CloseSessionRequest close;
    close.set_session_id(id);
    ASSERT_TRUE(client_->CloseSession(close).ok()) << id;
    testing::ExpectStatus(client_->CloseSession(close).status(),
                          absl::StatusCode::kNotFound, {id});
    testing::ExpectStatus(client_->TrainStep(Step(id)).status(),
                          absl::StatusCode::kNotFound, {id});
  }
}

TEST_F(ThreeServers, ForwardThenBackwardReachesTheActivationsServer) {
  auto session = client_->CreateSession(NewSession());
  ASSERT_TRUE(session.ok()) << session.status();
  const std::string id = session->session().session_id();
  std::set<std::string> routes;
  for (int i = 0; i < 10; ++i) {
    for (const std::string& model : {std::string(), id}) {
      auto forward = client_->Forward(ForwardOf(model));
      ASSERT_TRUE(forward.ok()) << forward.status();
      const std::string activation = forward->activation_id();
      if (!model.empty()) {
        EXPECT_EQ(RouteOfId(activation), RouteOfId(id)) << activation;
      }
      routes.insert(RouteOfId(activation));
      pb::BackwardRequest backward;
      backward.set_activation_id(activation);
      backward.set_from_loss(true);
      auto gradients = client_->Backward(backward);
      ASSERT_TRUE(gradients.ok()) << activation << ": " << gradients.status();
      EXPECT_EQ(gradients->gradients().count("W"), 1u);
    }
  }
  EXPECT_GE(routes.size(), 5u);  // drawn anew for each Forward of a graph
}

TEST_F(ThreeServers, ChosenRoutesGroupSessionsAndAnyOrderOfTheListAgrees) {
  auto a = client_->CreateSession(NewSession(), "team-a");
  auto b = client_->CreateSession(NewSession(), "team-a");
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  const std::string id = a->session().session_id();
  EXPECT_TRUE(absl::StartsWith(id, "team-a.")) << id;
  EXPECT_EQ(Holders(id), Holders(b->session().session_id()));
  // Another client, the list in another order, reaches the same server.
  auto other =
      Connect(addresses_[2] + "," + addresses_[0] + "," + addresses_[1]);
  for (int step = 1; step <= 10; ++step) {
    auto stepped = other->TrainStep(Step(id));
    ASSERT_TRUE(stepped.ok()) << stepped.status();
    EXPECT_EQ(stepped->step(), step);
  }
  testing::ExpectStatus(client_->CreateSession(NewSession(), "a/b").status(),
                        absl::StatusCode::kInvalidArgument, {"route 'a/b'"});
}

TEST_F(ThreeServers, ASingleAddressSendsTheRouteForABalancer) {
  // What a balancer hashes on reaches the server: the id starts with the
  // route, drawn by the client when none is given.
  auto chosen = direct_[1]->CreateSession(NewSession(), "r-17");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_TRUE(absl::StartsWith(chosen->session().session_id(), "r-17."));
  auto forward = direct_[1]->Forward(ForwardOf(""), "r-18");
  ASSERT_TRUE(forward.ok()) << forward.status();
  EXPECT_EQ(RouteOfId(forward->activation_id()), "r-18");
  auto drawn = direct_[1]->CreateSession(NewSession());
  ASSERT_TRUE(drawn.ok()) << drawn.status();
  EXPECT_EQ(RouteOfId(drawn->session().session_id()).size(), 8u);
  auto listed = direct_[1]->ListSessions();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sessions_size(), 2);
}

}  // namespace
}  // namespace gradserve::client
