// Client-side round-robin over several servers.
#include <set>

#include "client/client.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/status_testing.h"

namespace gradserve::client {
namespace {

TEST(ChannelTarget, ListsBecomeAddressLists) {
  EXPECT_EQ(*ChannelTarget("localhost:50051"), "localhost:50051");
  EXPECT_EQ(*ChannelTarget("dns:///gradserve:50051"), "dns:///gradserve:50051");
  EXPECT_EQ(*ChannelTarget("127.0.0.1:1,localhost:2"),
            "ipv4:127.0.0.1:1,127.0.0.1:2");
  EXPECT_EQ(*ChannelTarget("[::1]:5,[::1]:6"), "ipv6:[::1]:5,[::1]:6");
  testing::ExpectStatus(ChannelTarget("127.0.0.1:1,nohost.invalid:2").status(),
                        absl::StatusCode::kInvalidArgument,
                        {"'nohost.invalid:2'"});
  testing::ExpectStatus(ChannelTarget("127.0.0.1:1,127.0.0.1").status(),
                        absl::StatusCode::kInvalidArgument, {"no port"});
}

TEST(RoundRobin, CallsReachEveryServer) {
  // Three servers told apart by their node limit.
  std::vector<std::unique_ptr<server::GradientServer>> servers;
  std::string target;
  for (int64_t nodes : {101, 102, 103}) {
    server::ServerOptions options;
    options.address = "127.0.0.1:0";
    options.runtime.limits.max_graph_nodes = nodes;
    servers.push_back(std::move(*server::GradientServer::Start(options)));
    target += (target.empty() ? "" : ",") + std::string("127.0.0.1:") +
              std::to_string(servers.back()->port());
  }
  ClientOptions options;
  options.target = target;
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  std::multiset<int64_t> seen;
  for (int i = 0; i < 30; ++i) {
    auto info = (*client)->Info();
    ASSERT_TRUE(info.ok()) << info.status();
    seen.insert(info->limits().max_graph_nodes());
  }
  // Round-robin: once all three are connected, each takes every third call.
  for (int64_t nodes : {101, 102, 103})
    EXPECT_GE(seen.count(nodes), 5u) << nodes;
}

}  // namespace
}  // namespace gradserve::client
