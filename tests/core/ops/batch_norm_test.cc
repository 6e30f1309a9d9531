// BatchNorm in TRAIN and EVAL over [N, C], [N, C, L] and [N, C, H, W].
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

OpCase BatchNormCase(Shape x, Mode mode, bool weight = true, bool bias = true,
                     AttrMap attrs = {}) {
  const Shape c = {x[1]};
  std::vector<TestInput> inputs = {{"x", x, Init::kUniform, -2, 2}};
  inputs.push_back(weight ? TestInput{"w", c, Init::kUniform, 0.5, 1.5}
                          : TestInput{""});
  inputs.push_back(bias ? TestInput{"b", c} : TestInput{""});
  inputs.push_back({"rm", c, Init::kUniform, -0.5, 0.5});
  inputs.push_back({"rv", c, Init::kUniform, 0.5, 2});
  OpCase o("BatchNorm", inputs, attrs);
  o.mode = mode;
  return o;
}

class BatchNorm
    : public ::testing::TestWithParam<std::tuple<Shape, Mode, bool>> {};

TEST_P(BatchNorm, Gradients) {
  const auto& [shape, mode, affine] = GetParam();
  ExpectGradientsCorrect(BatchNormCase(shape, mode, affine, affine));
}

INSTANTIATE_TEST_SUITE_P(
    RanksAndModes, BatchNorm,
    ::testing::Combine(::testing::Values(Shape{6, 3}, Shape{4, 3, 5},
                                         Shape{2, 3, 4, 5}, Shape{2, 16, 3, 3},
                                         Shape{1, 2, 3, 3}),
                       ::testing::Values(Mode::kTrain, Mode::kEval),
                       ::testing::Bool()),
    [](const auto& info) {
      return "Rank" + std::to_string(std::get<0>(info.param).size()) + "C" +
             std::to_string(std::get<0>(info.param)[1]) + "N" +
             std::to_string(std::get<0>(info.param)[0]) +
             (std::get<1>(info.param) == Mode::kTrain ? "Train" : "Eval") +
             (std::get<2>(info.param) ? "Affine" : "Plain");
    });

// The batch [N=4, C=1] = {1, 2, 3, 6}: mean 3, biased variance 3.5, unbiased
// 14/3. Values checked against torch.nn.functional.batch_norm.
TEST(BatchNorm, TrainUsesBatchStatisticsAndUpdatesRunningOnes) {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["w"] = F32({1}, {2});
  g.parameters["b"] = F32({1}, {0.5});
  g.buffers["rm"] = F32({1}, {1});
  g.buffers["rv"] = F32({1}, {2});
  NodeDef n;
  n.name = "bn";
  n.op = "BatchNorm";
  n.inputs = {"x", "w", "b", "rm", "rv"};
  n.outputs = {"y"};
  n.attributes["momentum"] = 0.25;
  g.nodes = {n};
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    ComputeArgs args;
    args.float_dtype = dtype;
    args.feeds["x"] = F32({4, 1}, {1, 2, 3, 6});
    args.fetch = {"y"};
    auto r = Compute(g, args, Limits{});
    ASSERT_TRUE(r.ok()) << r.status();
    const double s = std::sqrt(3.5 + 1e-5);
    ExpectClose(r->outputs.at("y"),
                F32({4, 1}, {static_cast<float>(-2 * 2 / s + 0.5),
                             static_cast<float>(-1 * 2 / s + 0.5), 0.5f,
                             static_cast<float>(3 * 2 / s + 0.5)}),
                1e-6, "y");
    ExpectClose(r->buffers.at("rm"), F32({1}, {0.75f * 1 + 0.25f * 3}), 1e-6,
                "rm");
    ExpectClose(r->buffers.at("rv"),
                F32({1}, {static_cast<float>(0.75 * 2 + 0.25 * 14.0 / 3)}),
                1e-6, "rv");

    args.mode = Mode::kEval;
    auto e = Compute(g, args, Limits{});
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE(e->buffers.empty());  // EVAL leaves the running statistics
    const double se = std::sqrt(2 + 1e-5);
    ExpectClose(e->outputs.at("y"),
                F32({4, 1}, {0.5f, static_cast<float>(2 / se + 0.5),
                             static_cast<float>(4 / se + 0.5),
                             static_cast<float>(10 / se + 0.5)}),
                1e-6, "eval y");
  }
}

TEST(BatchNorm, RejectsBadInput) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    parts.insert(parts.begin(), "node 'node' (BatchNorm)");
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  OpCase c = BatchNormCase({4, 3}, Mode::kTrain);
  c.inputs[1].shape = {4};
  expect(c, {"input 'weight'", "[3]", "[4]"});
  c = BatchNormCase({4, 3, 2}, Mode::kEval);
  c.inputs[4].shape = {2};
  expect(c, {"input 'running_var'", "[3]", "[2]"});
  expect(BatchNormCase({1, 3}, Mode::kTrain),
         {"more than 1 value per channel"});
  expect(BatchNormCase({4, 3}, Mode::kTrain, true, true,
                       {{"momentum", std::nan("")}}),
         {"'momentum'", "finite"});
  expect(
      BatchNormCase({4, 3}, Mode::kTrain, true, true, {{"epsilon", HUGE_VAL}}),
      {"'epsilon'", "finite"});
  expect(BatchNormCase({2, 3, 2, 2, 2}, Mode::kEval),
         {"input 'x'", "rank 2 to 4"});
  // [N] only when empty, as PyTorch.
  OpCase one = BatchNormCase({4, 3}, Mode::kEval);
  one.inputs[0].shape = {4};
  expect(one, {"input 'x'", "rank 2 to 4", "[4]"});
}

// PyTorch takes any momentum and epsilon (OpInfo samples use momentum -1.2
// and -1, epsilon 0.6): the update and normalisation are the same formulas.
TEST(BatchNorm, MomentumAndEpsilonOutsideTheUsualRange) {
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    for (double momentum : {-1.2, 1.5}) {
      ExpectGradientsCorrect(
          BatchNormCase({3, 2, 4}, mode, true, true,
                        {{"momentum", momentum}, {"epsilon", 0.6}}));
    }
  }
  // The batch {1, 2, 3, 6}: mean 3, unbiased variance 14/3; momentum -1
  // gives 2·running - batch.
  OpCase c = BatchNormCase({4, 1}, Mode::kTrain, false, false,
                           {{"momentum", -1.0}, {"epsilon", 0.5}});
  c.inputs[3].placement = c.inputs[4].placement = Placement::kBuffer;
  auto r = RunPlaced(c,
                     {F32({4, 1}, {1, 2, 3, 6}), Tensor(), Tensor(),
                      F32({1}, {1}), F32({1}, {2})},
                     Tensor(), DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->buffers.at("rm"), F32({1}, {2 * 1 - 3}), 1e-6, "rm");
  ExpectClose(r->buffers.at("rv"),
              F32({1}, {static_cast<float>(2 * 2 - 14.0 / 3)}), 1e-6, "rv");
  const double s = std::sqrt(3.5 + 0.5);
  ExpectClose(
      r->outputs.at("out0"),
      F32({4, 1}, {static_cast<float>(-2 / s), static_cast<float>(-1 / s), 0.f,
                   static_cast<float>(3 / s)}),
      1e-6, "y");
}

// An empty batch normalises nothing and, as in PyTorch, leaves the running
// statistics as they were, in TRAIN too; [0] is taken as well.
TEST(BatchNorm, EmptyBatchLeavesTheRunningStatistics) {
  for (Shape x : {Shape{0, 3}, Shape{0, 3, 2}, Shape{0}}) {
    OpCase c = BatchNormCase({1, 3}, Mode::kTrain, true, true);
    c.inputs[0].shape = x;
    c.inputs[3].placement = c.inputs[4].placement = Placement::kBuffer;
    ExpectGradientsCorrect(c);
    const Tensor rm = F32({3}, {1, 2, 3}), rv = F32({3}, {4, 5, 6});
    auto r = RunPlaced(c,
                       {Tensor::Empty(DType::kFloat32, x), CaseInput(c, 1),
                        CaseInput(c, 2), rm, rv},
                       Tensor::Empty(DType::kFloat32, x), DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outputs.at("out0").shape(), x);
    ExpectClose(r->buffers.at("rm"), rm, 0, "rm");
    ExpectClose(r->buffers.at("rv"), rv, 0, "rv");
  }
}

// Inputs are positional: BatchNorm(x, rm, rv) gives rm as the weight and rv
// as the bias, and leaves the running statistics out. The check counted
// inputs, and the statistics arrived as null, even forward-only in EVAL.
TEST(BatchNorm, MissingRunningStatisticsAreRejectedByPosition) {
  const Shape c = {3};
  const std::vector<std::pair<std::vector<TestInput>, std::string>> bad = {
      {{{"x", {4, 3}}, {"rm", c}, {"rv", c}}, "input 'running_mean'"},
      {{{"x", {4, 3}}, {"w", c}, {"rm", c}, {"rv", c}}, "input 'running_var'"}};
  for (const auto& [inputs, missing] : bad) {
    for (Mode mode : {Mode::kTrain, Mode::kEval}) {
      OpCase o("BatchNorm", inputs);
      o.mode = mode;
      const std::vector<std::string> parts = {
          "node 'node' (BatchNorm)", missing, "required", "positional"};
      ExpectError(o, absl::StatusCode::kInvalidArgument, parts);
      std::vector<Tensor> values;
      for (size_t i = 0; i < inputs.size(); ++i) {
        values.push_back(CaseInput(o, i));
      }
      // Forward only: no dL/dy.
      auto r = RunPlaced(o, values, Tensor(), DType::kFloat32);
      ASSERT_FALSE(r.ok());
      ExpectStatus(r.status(), absl::StatusCode::kInvalidArgument, parts);
    }
  }
}

// dL/dx alone, the weight and bias not wanted (buffers, or left out of
// wrt): oneDNN 2.6 has no backward_data with a scale or shift, and this was
// UNIMPLEMENTED.
TEST(BatchNorm, InputGradientAlone) {
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    for (Shape x : {Shape{6, 3}, Shape{2, 16, 3, 3}}) {
      for (int affine = 1; affine < 4; ++affine) {
        const OpCase c =
            WithWrt(BatchNormCase(x, mode, affine & 1, affine & 2), {0});
        ExpectGradientsCorrect(Placed(c, Placements::kAllFeeds));
        ExpectGradientsCorrect(Placed(c, Placements::kMixedRotated));
      }
    }
  }
}

TEST(BatchNorm, EvalAcceptsBatchOfOne) {
  auto r = RunCase(BatchNormCase({1, 3, 2, 2}, Mode::kEval), DType::kFloat32);
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST(BatchNorm, EmptyBatchInEval) {
  const Tensor c = F32({3}, {1, 1, 1});
  auto r =
      RunOnValues(BatchNormCase({0, 3, 2, 2}, Mode::kEval),
                  {Tensor::Empty(DType::kFloat32, {0, 3, 2, 2}), c, c, c, c},
                  Tensor::Empty(DType::kFloat32, {0, 3, 2, 2}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 3, 2, 2}));
  ExpectClose(r->gradients.at("w"), F32({3}, {0, 0, 0}), 0, "dw");
}

}  // namespace
}  // namespace gradserve::testing
