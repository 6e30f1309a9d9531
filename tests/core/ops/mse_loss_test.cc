#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"

namespace gradserve::testing {
namespace {

TEST(MSELoss, GradientsMean) {
  ExpectGradientsCorrect(
      LossCase("MSELoss", {{"p", {3, 4}}, {"t", {3, 4}}}, "mean"));
}

TEST(MSELoss, GradientsSum) {
  ExpectGradientsCorrect(
      LossCase("MSELoss", {{"p", {2, 3, 2}}, {"t", {2, 3, 2}}}, "sum"));
}

TEST(MSELoss, BatchOne) {
  ExpectGradientsCorrect(LossCase("MSELoss", {{"p", {1}}, {"t", {1}}}, "mean"));
}

// Values from torch 1.13: F.mse_loss(p, t, reduction=...) and its backward.
TEST(MSELoss, KnownValuesMatchTorch) {
  NamedTensors in = {{"p", F32({2, 3}, {0.5, -1.25, 2, 3, 0, -0.75})},
                     {"t", F32({2, 3}, {1, 0.5, -2, 3, 0.25, 0.25})}};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const double tol = dtype == DType::kFloat64 ? 1e-15 : 1e-6;
    ExpectLoss(
        "MSELoss", "mean", in, dtype, tol, 3.3958333333333335,
        {{"p",
          F64({2, 3}, {-1.0 / 6, -3.5 / 6, 8.0 / 6, 0, -0.5 / 6, -2.0 / 6})},
         {"t",
          F64({2, 3}, {1.0 / 6, 3.5 / 6, -8.0 / 6, 0, 0.5 / 6, 2.0 / 6})}});
    ExpectLoss("MSELoss", "sum", in, dtype, tol, 20.375,
               {{"p", F64({2, 3}, {-1, -3.5, 8, 0, -0.5, -2})},
                {"t", F64({2, 3}, {1, 3.5, -8, 0, 0.5, 2})}});
  }
}

// Only the gradients asked for come back (and are computed).
TEST(MSELoss, OnlyTheAskedGradients) {
  NamedTensors in = {{"p", F32({2}, {1, 2})}, {"t", F32({2}, {0, 4})}};
  ExpectLoss("MSELoss", "sum", in, DType::kFloat64, 0, 5,
             {{"t", F64({2}, {-2, 4})}});
  ExpectLoss("MSELoss", "sum", in, DType::kFloat64, 0, 5,
             {{"p", F64({2}, {2, -4})}});
}

TEST(MSELoss, ScalarInputs) {
  ExpectLoss("MSELoss", "mean", {{"p", F32({}, {3})}, {"t", F32({}, {1})}},
             DType::kFloat64, 0, 4, {{"p", F64({}, {4})}});
}

TEST(MSELoss, EmptyInputs) {
  ExpectEmptyReductions(
      "MSELoss", {{"p", F32({0, 3}, {})}, {"t", F32({0, 3}, {})}}, {"p", "t"});
}

TEST(MSELoss, DescribeCountsFlops) {
  OpCase c = LossCase("MSELoss", {{"p", {3, 4}}, {"t", {3, 4}}}, "mean");
  auto summary = Describe(
      SingleOpGraph(c),
      {{"p", {DType::kFloat32, {3, 4}}}, {"t", {DType::kFloat32, {3, 4}}}},
      Limits{});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->nodes[0].outputs[0], (TensorMeta{DType::kFloat32, {}}));
  EXPECT_EQ(summary->forward_flops, 3 * 12);
}

TEST(MSELoss, RejectsShapeMismatch) {
  ExpectError(LossCase("MSELoss", {{"p", {3, 4}}, {"t", {4, 3}}}, "mean"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MSELoss)", "input 'target' (value 't')",
               "input 'prediction' (value 'p')", "[3, 4]", "got [4, 3]"});
}

TEST(MSELoss, RejectsIntTarget) {
  ExpectError(
      LossCase("MSELoss", {{"p", {3}}, {"t", {3}, Init::kLabels, 0, 0, 2}},
               "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (MSELoss)", "input 'target'", "float32", "int64 [3]"});
}

TEST(MSELoss, RejectsUnknownReduction) {
  ExpectError(LossCase("MSELoss", {{"p", {3}}, {"t", {3}}}, "elementwise"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "'reduction'", "\"mean\", \"sum\" or \"none\"",
               "\"elementwise\""});
}

}  // namespace
}  // namespace gradserve::testing
