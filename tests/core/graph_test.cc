// Planner and executor behaviour: validation, ordering, pruning, gradient
// routing and limits, on graphs of Linear nodes.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "core/analysis/gradient_check.h"
#include "core/compute.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {
namespace {

NodeDef LinearNode(std::string name, std::string x, std::string w,
                   std::string out, std::string b = "") {
  NodeDef n;
  n.name = std::move(name);
  n.op = "Linear";
  n.inputs = {std::move(x), std::move(w)};
  if (!b.empty()) n.inputs.push_back(std::move(b));
  n.outputs = {std::move(out)};
  return n;
}

Tensor Random(Shape shape, uint64_t seed) {
  return MakeInput(TestInput{"t", std::move(shape)}, seed);
}

// x -> fc1 -> h, which fans out to fc2 -> y1 and fc3 -> y2.
GraphDef FanOutGraph() {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W1"] = Random({4, 3}, 1);
  g.parameters["b1"] = Random({4}, 2);
  g.parameters["W2"] = Random({2, 4}, 3);
  g.parameters["W3"] = Random({5, 4}, 4);
  g.nodes = {LinearNode("fc3", "h", "W3", "y2"),  // out of order on purpose
             LinearNode("fc1", "x", "W1", "h", "b1"),
             LinearNode("fc2", "h", "W2", "y1")};
  g.outputs = {"y1", "y2"};
  return g;
}

ComputeArgs FanOutArgs() {
  ComputeArgs args;
  args.feeds["x"] = Random({6, 3}, 5);
  args.output_gradients["y1"] = Random({6, 2}, 6);
  args.output_gradients["y2"] = Random({6, 5}, 7);
  return args;
}

TEST(Graph, IntermediateGradientIsSumOfBranches) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  args.wrt = {"h"};
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  // dL/dh = dy1 · W2 + dy2 · W3.
  const Tensor& dy1 = args.output_gradients.at("y1");
  const Tensor& dy2 = args.output_gradients.at("y2");
  const Tensor& w2 = g.parameters.at("W2");
  const Tensor& w3 = g.parameters.at("W3");
  Tensor expected = Tensor::Zeros(DType::kFloat32, {6, 4});
  for (int n = 0; n < 6; ++n) {
    for (int k = 0; k < 4; ++k) {
      double sum = 0;
      for (int o = 0; o < 2; ++o) {
        sum += dy1.data<float>()[n * 2 + o] * w2.data<float>()[o * 4 + k];
      }
      for (int o = 0; o < 5; ++o) {
        sum += dy2.data<float>()[n * 5 + o] * w3.data<float>()[o * 4 + k];
      }
      expected.data<float>()[n * 4 + k] = static_cast<float>(sum);
    }
  }
  ExpectClose(r->gradients.at("h"), expected, 1e-5, "dh");
}

TEST(Graph, FiniteDifferencesOnWholeGraph) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  args.wrt = {"x", "W1", "b1", "W2", "W3"};
  GradCheckOptions options;
  options.rtol = options.atol = 1e-6;
  auto checks = CheckGradients(g, args, options, Limits{});
  ASSERT_TRUE(checks.ok()) << checks.status();
  ASSERT_EQ(checks->tensors.size(), 5u);
  for (const TensorCheck& c : checks->tensors) {
    EXPECT_TRUE(c.passed) << c.name << "[" << absl::StrJoin(c.worst_index, ", ")
                          << "] " << c.analytic << " vs " << c.numeric;
  }
}

TEST(Graph, GradCheckRefusesIntermediateValues) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  args.wrt = {"h"};
  auto checks = CheckGradients(g, args, GradCheckOptions{}, Limits{});
  ASSERT_FALSE(checks.ok());
  EXPECT_NE(checks.status().message().find("'h'"), std::string::npos);
}

TEST(Graph, EmptyWrtMeansAllParameters) {
  GraphDef g = FanOutGraph();
  g.parameters["unused"] = Random({3}, 9);
  ComputeArgs args = FanOutArgs();
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> names;
  for (const auto& [name, t] : r->gradients) names.push_back(name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"W1", "W2", "W3", "b1", "unused"}));
  // Nothing depends on "unused": its gradient is returned, all zeros.
  ExpectClose(r->gradients.at("unused"), Tensor::Zeros(DType::kFloat32, {3}), 0,
              "unused");
}

TEST(Graph, SeedOnOneBranchLeavesOtherBranchZero) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  args.output_gradients.erase("y2");
  args.wrt = {"W3"};
  auto r = Compute(g, args, Limits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("wrt 'W3'"), std::string::npos)
      << r.status();
}

TEST(Graph, ForwardOnlyPrunesUnneededNodes) {
  GraphDef g = FanOutGraph();
  g.nodes.push_back(LinearNode("broken", "x", "W2", "z"));  // bad shapes
  ComputeArgs args;
  args.feeds["x"] = Random({6, 3}, 5);
  args.fetch = {"h"};
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.size(), 1u);
  EXPECT_EQ(r->outputs.at("h").shape(), (Shape{6, 4}));
  EXPECT_TRUE(r->gradients.empty());
}

TEST(Graph, LossAndSeedsAdd) {
  // y = x · Wᵀ with a [1,1] output used as the loss and also seeded: the
  // gradient is (1 + seed) · x.
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = F32({1, 2}, {0.5, -1});
  g.nodes = {LinearNode("fc", "x", "W", "y")};
  ComputeArgs args;
  args.feeds["x"] = F32({1, 2}, {3, 4});
  args.loss = "y";
  args.output_gradients["y"] = F32({1, 1}, {2});
  args.wrt = {"W"};
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->gradients.at("W"), F32({1, 2}, {9, 12}), 0, "dW");
  ExpectClose(r->outputs.at("y"), F32({1, 1}, {-2.5}), 0, "loss fetched");
}

struct BadGraphCase {
  std::string name;
  std::function<void(GraphDef&, ComputeArgs&)> mutate;
  absl::StatusCode code;
  std::vector<std::string> parts;
};

class BadGraph : public ::testing::TestWithParam<BadGraphCase> {};

TEST_P(BadGraph, IsRejectedWithAClearMessage) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  GetParam().mutate(g, args);
  Limits limits;
  limits.max_graph_nodes = 10;
  limits.max_request_bytes = 200000;
  limits.max_tensor_elements = 1 << 16;
  auto r = Compute(g, args, limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GetParam().code) << r.status();
  for (const std::string& part : GetParam().parts) {
    EXPECT_NE(r.status().message().find(part), std::string::npos)
        << "'" << part << "' missing from: " << r.status();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Planner, BadGraph,
    ::testing::Values(BadGraphCase{"UnknownOp",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[0].op = "Conv9d";
                                   },
                                   absl::StatusCode::kUnimplemented,
                                   {"node 'fc3'", "unknown op 'Conv9d'"}},
                      BadGraphCase{"DuplicateNodeName",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].name = "fc1";
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node name 'fc1' is used twice"}},
                      BadGraphCase{
                          "ValueDefinedTwice",
                          [](GraphDef& g, ComputeArgs&) {
                            g.nodes[2].outputs = {"h"};
                          },
                          absl::StatusCode::kInvalidArgument,
                          {"node 'fc2'", "value 'h' is defined twice"}},
                      BadGraphCase{"OutputShadowsParameter",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].outputs = {"W1"};
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"'W1' is defined twice", "a parameter"}},
                      BadGraphCase{"DanglingInput",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].inputs[1] = "W9";
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc2'", "input 'weight'", "'W9'"}},
                      BadGraphCase{"Cycle",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[1].inputs[0] = "y1";
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"cycle", "'fc1'", "'fc2'"}},
                      BadGraphCase{"SelfLoop",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[1].inputs[0] = "h";
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"cycle", "'fc1'"}},
                      BadGraphCase{"TooFewInputs",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].inputs = {"h"};
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc2' (Linear)",
                                    "'weight' (position 1)", "was not given"}},
                      BadGraphCase{"TooManyInputs",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].inputs = {"h", "W2", "b1", "x"};
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc2' (Linear)", "got 4"}},
                      BadGraphCase{
                          "RequiredInputLeftEmpty",
                          [](GraphDef& g, ComputeArgs&) {
                            g.nodes[2].inputs[1] = "";
                          },
                          absl::StatusCode::kInvalidArgument,
                          {"node 'fc2'", "'weight' (position 1) is required"}},
                      BadGraphCase{"NoOutputs",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].outputs.clear();
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc2'", "outputs"}},
                      BadGraphCase{"EmptyNodeName",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].name = "";
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"has no name"}},
                      BadGraphCase{"UnknownAttribute",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.nodes[2].attributes["alpha"] =
                                         int64_t{1};
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc2'", "unknown attribute 'alpha'"}},
                      BadGraphCase{
                          "NonFiniteAttribute",
                          [](GraphDef& g, ComputeArgs&) {
                            g.nodes[2].op = "Scale";
                            g.nodes[2].inputs = {"h"};
                            g.nodes[2].attributes["factor"] = std::nan("");
                          },
                          absl::StatusCode::kInvalidArgument,
                          {"node 'fc2' (Scale)", "'factor' must be finite"}},
                      BadGraphCase{
                          "InputNotFed",
                          [](GraphDef&, ComputeArgs& a) { a.feeds.clear(); },
                          absl::StatusCode::kInvalidArgument,
                          {"graph input 'x'", "not given"}},
                      BadGraphCase{"FeedForNodeOutput",
                                   [](GraphDef&, ComputeArgs& a) {
                                     a.feeds["h"] = Random({6, 4}, 1);
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"'h'", "output of a node"}},
                      BadGraphCase{"FeedForUnknownName",
                                   [](GraphDef&, ComputeArgs& a) {
                                     a.feeds["nope"] = Random({1}, 1);
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"'nope'", "not defined"}},
                      BadGraphCase{
                          "UnknownFetch",
                          [](GraphDef&, ComputeArgs& a) { a.fetch = {"zz"}; },
                          absl::StatusCode::kInvalidArgument,
                          {"fetch", "'zz'"}},
                      BadGraphCase{
                          "UnknownWrt",
                          [](GraphDef&, ComputeArgs& a) { a.wrt = {"zz"}; },
                          absl::StatusCode::kInvalidArgument,
                          {"wrt", "'zz'"}},
                      BadGraphCase{
                          "NonScalarLoss",
                          [](GraphDef&, ComputeArgs& a) { a.loss = "y1"; },
                          absl::StatusCode::kInvalidArgument,
                          {"loss 'y1'", "scalar", "[6, 2]"}},
                      BadGraphCase{
                          "SeedShapeMismatch",
                          [](GraphDef&, ComputeArgs& a) {
                            a.output_gradients["y1"] = Random({6, 3}, 1);
                          },
                          absl::StatusCode::kInvalidArgument,
                          {"output_gradients['y1']", "[6, 2]", "[6, 3]"}},
                      BadGraphCase{"WrongFeedShape",
                                   [](GraphDef&, ComputeArgs& a) {
                                     a.feeds["x"] = Random({6, 5}, 1);
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"node 'fc1' (Linear)", "'weight'",
                                    "[4, 3]"}},
                      BadGraphCase{"Int64Parameter",
                                   [](GraphDef& g, ComputeArgs&) {
                                     g.parameters["W2"] = I64(
                                         {2, 4}, std::vector<int64_t>(8, 1));
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"parameter 'W2'", "int64"}},
                      BadGraphCase{"TooManyNodes",
                                   [](GraphDef& g, ComputeArgs&) {
                                     for (int i = 0; i < 10; ++i) {
                                       g.nodes.push_back(LinearNode(
                                           "extra" + std::to_string(i), "x",
                                           "W1", "e" + std::to_string(i)));
                                     }
                                   },
                                   absl::StatusCode::kResourceExhausted,
                                   {"13 nodes", "limit of 10"}},
                      BadGraphCase{"OutputOverElementLimit",
                                   [](GraphDef& g, ComputeArgs& a) {
                                     // Small inputs whose product would be 300
                                     // x 300.
                                     g.parameters["W3"] = Random({300, 4}, 1);
                                     a.feeds["x"] = Random({300, 3}, 5);
                                     a.output_gradients.clear();
                                     a.fetch = {"y2"};
                                   },
                                   absl::StatusCode::kResourceExhausted,
                                   {"node 'fc3' output 'y2'", "[300, 300]",
                                    "limit of 65536"}},
                      BadGraphCase{"OverRequestBytes",
                                   [](GraphDef& g, ComputeArgs& a) {
                                     // Each tensor is within the element limit;
                                     // together they need more than 200000
                                     // bytes.
                                     g.parameters["W3"] = Random({1000, 4}, 1);
                                     a.feeds["x"] = Random({60, 3}, 5);
                                     a.output_gradients.clear();
                                     a.fetch = {"y2"};
                                   },
                                   absl::StatusCode::kResourceExhausted,
                                   {"over the limit of 200000"}},
                      BadGraphCase{"NothingToCompute",
                                   [](GraphDef& g, ComputeArgs& a) {
                                     g.outputs.clear();
                                     a.output_gradients.clear();
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"nothing to compute"}},
                      BadGraphCase{"WrtWithoutLoss",
                                   [](GraphDef&, ComputeArgs& a) {
                                     a.output_gradients.clear();
                                     a.wrt = {"W1"};
                                   },
                                   absl::StatusCode::kInvalidArgument,
                                   {"nothing to differentiate"}}),
    [](const ::testing::TestParamInfo<BadGraphCase>& info) {
      return info.param.name;
    });

TEST(Graph, CancellationStopsBetweenNodes) {
  GraphDef g = FanOutGraph();
  ComputeArgs args = FanOutArgs();
  int polls = 0;
  args.check_cancelled = [&]() {
    return ++polls >= 2 ? absl::CancelledError("client went away")
                        : absl::OkStatus();
  };
  auto r = Compute(g, args, Limits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(polls, 2);
}

TEST(Graph, DescribeCountsParametersAndFlops) {
  GraphDef g = FanOutGraph();
  auto s = Describe(g, {{"x", TensorMeta{DType::kFloat32, {6, 3}}}}, Limits{});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->nodes.size(), 3u);
  EXPECT_EQ(s->nodes[0].name, "fc1");  // sorted: fc1 before its consumers
  EXPECT_EQ(s->nodes[0].parameters, 4 * 3 + 4);
  EXPECT_EQ(s->nodes[0].forward_flops, 2 * 6 * 3 * 4);
  EXPECT_EQ(s->nodes[0].outputs[0].shape, (Shape{6, 4}));
  EXPECT_EQ(s->total_parameters, 12 + 4 + 8 + 20);
  EXPECT_EQ(s->forward_flops, 2 * 6 * (3 * 4 + 4 * 2 + 4 * 5));
  EXPECT_EQ(s->backward_flops, 2 * s->forward_flops);
}

TEST(Graph, ParameterOverrideByFeed) {
  GraphDef g = FanOutGraph();
  ComputeArgs args;
  args.feeds["x"] = F32({1, 3}, {1, 1, 1});
  args.feeds["W1"] = Tensor::Zeros(DType::kFloat32, {4, 3});
  args.feeds["b1"] = F32({4}, {1, 2, 3, 4});
  args.fetch = {"h"};
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("h"), F32({1, 4}, {1, 2, 3, 4}), 0, "h");
}

}  // namespace
}  // namespace gradserve::testing
