// A small CNN through the planner and executor: conv-BN-ReLU-maxpool twice,
// flatten, linear, cross-entropy. float32 runs in oneDNN's blocked layouts
// between the convolutions and the flatten; it must agree with the float64
// reference, which must agree with finite differences.
#include "absl/strings/str_join.h"
#include "core/analysis/gradient_check.h"
#include "core/compute.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {
namespace {

// x [N, 3, 8, 8] -> conv 16 -> BN -> ReLU -> pool -> conv 16 -> BN -> ReLU
// -> pool -> flatten [N, 64] -> linear 5 -> cross-entropy.
GraphDef SmallCnnGraph() {
  GraphDef g;
  g.inputs = {"x", "labels"};
  g.parameters["c1.w"] = Uniform({16, 3, 3, 3}, 1);
  g.parameters["c1.b"] = Uniform({16}, 2);
  g.parameters["bn1.w"] = Uniform({16}, 3, 0.5, 1.5);
  g.parameters["bn1.b"] = Uniform({16}, 4);
  g.buffers["bn1.rm"] = Uniform({16}, 5);
  g.buffers["bn1.rv"] = Uniform({16}, 6, 0.5, 1.5);
  g.parameters["c2.w"] = Uniform({16, 16, 3, 3}, 7, -0.2, 0.2);
  g.parameters["bn2.w"] = Uniform({16}, 8, 0.5, 1.5);
  g.parameters["bn2.b"] = Uniform({16}, 9);
  g.buffers["bn2.rm"] = Uniform({16}, 10);
  g.buffers["bn2.rv"] = Uniform({16}, 11, 0.5, 1.5);
  g.parameters["fc.w"] = Uniform({5, 64}, 12);
  g.parameters["fc.b"] = Uniform({5}, 13);
  const AttrMap pad1 = {{"padding", std::vector<int64_t>{1, 1}}};
  const AttrMap pool2 = {{"kernel", std::vector<int64_t>{2, 2}}};
  g.nodes = {Node("conv1", "Conv2d", {"x", "c1.w", "c1.b"}, "h1", pad1),
             Node("bn1", "BatchNorm",
                  {"h1", "bn1.w", "bn1.b", "bn1.rm", "bn1.rv"}, "n1"),
             Node("relu1", "ReLU", {"n1"}, "a1"),
             Node("pool1", "MaxPool2d", {"a1"}, "p1", pool2),
             Node("conv2", "Conv2d", {"p1", "c2.w", ""}, "h2", pad1),
             Node("bn2", "BatchNorm",
                  {"h2", "bn2.w", "bn2.b", "bn2.rm", "bn2.rv"}, "n2"),
             Node("relu2", "ReLU", {"n2"}, "a2"),
             Node("pool2", "MaxPool2d", {"a2"}, "p2", pool2),
             Node("flat", "Flatten", {"p2"}, "f"),
             Node("fc", "Linear", {"f", "fc.w", "fc.b"}, "logits"),
             Node("loss", "CrossEntropyLoss", {"logits", "labels"}, "L")};
  g.outputs = {"logits"};
  return g;
}

// |analytic - numeric| <= 1e-6 (1 + |numeric|) on 24 elements of each
// tensor; float32 is compared with float64 separately.
GradCheckOptions StrictOptions() {
  GradCheckOptions options;
  options.rtol = options.atol = 1e-6;
  options.max_elements_per_tensor = 24;
  options.check_float32 = false;
  return options;
}

// Runs g in float64 and in float32 (oneDNN, blocked layouts) and expects the
// outputs and gradients to agree; returns the float32 result.
RunResult ExpectFloat32MatchesFloat64(const GraphDef& g, ComputeArgs args) {
  args.float_dtype = DType::kFloat64;
  auto exact = Compute(g, args, Limits{});
  EXPECT_TRUE(exact.ok()) << exact.status();
  args.float_dtype = DType::kFloat32;
  auto fast = Compute(g, args, Limits{});
  EXPECT_TRUE(fast.ok()) << fast.status();
  if (!exact.ok() || !fast.ok()) return {};
  for (const auto& [name, t] : exact->outputs) {
    ExpectClose(fast->outputs.at(name), t, 1e-4, "output " + name);
  }
  for (const auto& [name, t] : exact->gradients) {
    ExpectClose(fast->gradients.at(name), t, 1e-4, "gradient of " + name);
  }
  for (const auto& [name, t] : exact->buffers) {
    ExpectClose(fast->buffers.at(name), t, 1e-5, "buffer " + name);
  }
  return *std::move(fast);
}

ComputeArgs CnnArgs(Mode mode) {
  ComputeArgs args;
  args.feeds["x"] = Uniform({4, 3, 8, 8}, 20, -1, 1);
  args.feeds["labels"] = I64({4}, {0, 3, 4, 1});
  args.loss = "L";
  args.fetch = {"logits", "h2"};
  args.mode = mode;
  return args;
}

class SmallCnn : public ::testing::TestWithParam<Mode> {};

TEST_P(SmallCnn, Float32InBlockedLayoutsMatchesFloat64) {
  const GraphDef g = SmallCnnGraph();
  ComputeArgs args = CnnArgs(GetParam());
  args.wrt = {"x",     "c1.w",  "c1.b", "bn1.w", "bn1.b", "c2.w",
              "bn2.w", "bn2.b", "fc.w", "fc.b",  "h2"};
  const RunResult fast = ExpectFloat32MatchesFloat64(g, args);
  EXPECT_EQ(fast.buffers.size(), GetParam() == Mode::kTrain ? 4u : 0u);
}

TEST_P(SmallCnn, GradientsMatchFiniteDifferences) {
  ComputeArgs args = CnnArgs(GetParam());
  args.fetch.clear();
  args.wrt = {"x", "c1.w", "bn1.w", "c2.w", "bn2.b", "fc.w"};
  auto checks =
      CheckGradients(SmallCnnGraph(), args, StrictOptions(), Limits{});
  ASSERT_TRUE(checks.ok()) << checks.status();
  for (const TensorCheck& c : checks->tensors) {
    EXPECT_TRUE(c.passed) << c.name << "[" << absl::StrJoin(c.worst_index, ", ")
                          << "]: " << c.analytic << " vs " << c.numeric;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SmallCnn,
                         ::testing::Values(Mode::kTrain, Mode::kEval),
                         [](const auto& info) {
                           return info.param == Mode::kTrain ? "Train" : "Eval";
                         });

TEST(Layouts, FollowTheConvolutionThroughTheChain) {
  const GraphDef g = SmallCnnGraph();
  ProgramRequest request;
  request.given["x"] = {DType::kFloat32, {4, 3, 8, 8}};
  request.given["labels"] = {DType::kInt64, {4}};
  request.loss = "L";
  auto index = GraphIndex::Build(g, Limits{});
  ASSERT_TRUE(index.ok()) << index.status();
  auto program = Program::Compile(*index, request, Limits{});
  ASSERT_TRUE(program.ok()) << program.status();
  std::map<std::string, const Op*> ops;
  for (const ProgramNode& n : (*program)->nodes()) {
    ops[n.node->def.name] = n.op.get();
  }
  // Every op from conv1 to pool2 hands on a layout, and the ones that follow
  // their input keep the convolution's.
  for (const char* name :
       {"conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2"}) {
    EXPECT_NE(ops[name]->OutputLayout(0), nullptr) << name;
  }
  EXPECT_EQ(ops["bn1"]->OutputLayout(0), ops["conv1"]->OutputLayout(0));
  EXPECT_EQ(ops["relu1"]->OutputLayout(0), ops["conv1"]->OutputLayout(0));
  EXPECT_EQ(ops["relu2"]->OutputLayout(0), ops["conv2"]->OutputLayout(0));
  // Flatten takes plain tensors and hands on plain ones.
  EXPECT_EQ(ops["flat"]->OutputLayout(0), nullptr);
}

TEST(Layouts, ResidualAddOfBlockedValues) {
  // y = relu(conv(x)) + conv(relu(conv(x))): Add takes plain tensors, so the
  // executor reorders the convolutions' outputs for it, and the gradient of
  // h (two consumers, in different layouts) is summed correctly.
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["w1"] = Uniform({16, 4, 3, 3}, 1);
  g.parameters["w2"] = Uniform({16, 16, 3, 3}, 2, -0.2, 0.2);
  const AttrMap pad1 = {{"padding", std::vector<int64_t>{1, 1}}};
  g.nodes = {Node("c1", "Conv2d", {"x", "w1", ""}, "h", pad1),
             Node("r", "ReLU", {"h"}, "a"),
             Node("c2", "Conv2d", {"a", "w2", ""}, "u", pad1),
             Node("sum", "Add", {"a", "u"}, "y")};
  ComputeArgs args;
  args.feeds["x"] = Uniform({2, 4, 6, 6}, 3, -1, 1);
  args.output_gradients["y"] = Uniform({2, 16, 6, 6}, 4, -1, 1);
  args.wrt = {"x", "w1", "w2", "h"};
  ExpectFloat32MatchesFloat64(g, args);
  args.wrt = {"x", "w1", "w2"};
  auto checks = CheckGradients(g, args, StrictOptions(), Limits{});
  ASSERT_TRUE(checks.ok()) << checks.status();
  for (const TensorCheck& c : checks->tensors) EXPECT_TRUE(c.passed) << c.name;
}

}  // namespace
}  // namespace gradserve::testing

namespace gradserve::testing {
namespace {

TEST(Describe, CountsTrainableParametersAndConvolutionFlops) {
  auto s = Describe(SmallCnnGraph(),
                    {{"x", {DType::kFloat32, {4, 3, 8, 8}}},
                     {"labels", {DType::kInt64, {4}}}},
                    Limits{});
  ASSERT_TRUE(s.ok()) << s.status();
  // conv1 16·3·3·3 + 16, bn1 16 + 16, conv2 16·16·3·3, bn2 16 + 16,
  // fc 5·64 + 5: running statistics are buffers, not parameters.
  EXPECT_EQ(s->total_parameters, 448 + 32 + 2304 + 32 + 325);
  std::map<std::string, const NodeSummary*> nodes;
  for (const NodeSummary& n : s->nodes) nodes[n.name] = &n;
  EXPECT_EQ(nodes["bn1"]->parameters, 32);
  EXPECT_EQ(nodes["conv1"]->parameters, 448);
  // 2·C·kh·kw multiply-adds per output element of [4, 16, 8, 8].
  EXPECT_EQ(nodes["conv1"]->forward_flops, 2 * 3 * 3 * 3 * 4 * 16 * 8 * 8);
  EXPECT_EQ(nodes["pool1"]->outputs[0].shape, (Shape{4, 16, 4, 4}));
  EXPECT_EQ(nodes["flat"]->outputs[0].shape, (Shape{4, 64}));
}

}  // namespace
}  // namespace gradserve::testing
