#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

OpCase NLLCase(int64_t n, int64_t classes, const std::string& reduction) {
  return LossCase("NLLLoss",
                  {{"lp", {n, classes}, Init::kUniform, -3, 0},
                   {"y", {n}, Init::kLabels, 0, 0, classes, false}},
                  reduction);
}

TEST(NLLLoss, GradientsMean) { ExpectGradientsCorrect(NLLCase(6, 4, "mean")); }

TEST(NLLLoss, GradientsSum) { ExpectGradientsCorrect(NLLCase(6, 4, "sum")); }

TEST(NLLLoss, BatchOneAndOneClass) {
  ExpectGradientsCorrect(NLLCase(1, 5, "mean"));
  ExpectGradientsCorrect(NLLCase(3, 1, "mean"));
}

// Values from torch 1.13: F.nll_loss(lp, y, reduction=...).backward().
TEST(NLLLoss, KnownValuesMatchTorch) {
  NamedTensors in = {{"lp", F32({2, 3}, {-0.5, -1, -2, -3, -0.25, -1.5})},
                     {"y", I64({2}, {2, 0})}};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ExpectLoss("NLLLoss", "mean", in, dtype, 0, 2.5,
               {{"lp", F64({2, 3}, {0, 0, -0.5, -0.5, 0, 0})}});
    ExpectLoss("NLLLoss", "sum", in, dtype, 0, 5,
               {{"lp", F64({2, 3}, {0, 0, -1, -1, 0, 0})}});
  }
}

// torch's [N, C, d...] log-probabilities with labels [N, d...], and
// unbatched [C] ones with a 0-d label (a batch of one).
TEST(NLLLoss, SpatialDimsAndUnbatched) {
  for (const std::string reduction : {"mean", "sum"}) {
    ExpectGradientsCorrect(
        LossCase("NLLLoss",
                 {{"lp", {2, 3, 2, 2}, Init::kUniform, -3, 0},
                  {"y", {2, 2, 2}, Init::kLabels, 0, 0, 3, false}},
                 reduction));
    ExpectUnbatchedIsABatchOfOne(
        LossCase("NLLLoss",
                 {{"lp", {4}, Init::kUniform, -3, 0},
                  {"y", {}, Init::kLabels, 0, 0, 4, false}},
                 reduction),
        {0, 1});
  }
  // F.nll_loss(lp [1, 3, 2], y [[2, 0]]) = (2 + 3) / 2 in torch 1.13.
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ExpectLoss("NLLLoss", "mean",
               {{"lp", F32({1, 3, 2}, {-0.5, -1, -2, -3, -0.25, -1.5})},
                {"y", I64({1, 2}, {2, 0})}},
               dtype, 0, 0.625,
               {{"lp", F64({1, 3, 2}, {0, -0.5, 0, 0, -0.5, 0})}});
  }
  ExpectError(
      LossCase("NLLLoss", {{"lp", {3}}, {"y", {1}, Init::kLabels, 0, 0, 3}},
               "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (NLLLoss)", "input 'target' (value 'y')",
       "0-d int64 class label for unbatched", "got int64 [1]"});
}

TEST(NLLLoss, EmptyBatch) {
  ExpectEmptyReductions("NLLLoss",
                        {{"lp", F32({0, 3}, {})}, {"y", I64({0}, {})}}, {"lp"});
}

TEST(NLLLoss, RejectsNegativeLabel) {
  ExpectFailure(RunLoss("NLLLoss", "mean",
                        {{"lp", F32({2, 3}, {-1, -1, -1, -1, -1, -1})},
                         {"y", I64({2}, {-5, 1})}},
                        {"lp"}),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (NLLLoss)", "input 'target' (value 'y')",
                 "class -5", "row 0", "C = 3", "or ignore_index -100"});
}

TEST(NLLLoss, RejectsLabelOfC) {
  ExpectFailure(RunLoss("NLLLoss", "mean",
                        {{"lp", F32({2, 3}, {-1, -1, -1, -1, -1, -1})},
                         {"y", I64({2}, {0, 3})}},
                        {"lp"}),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (NLLLoss)", "input 'target' (value 'y')",
                 "class 3", "row 1", "C = 3"});
}

TEST(NLLLoss, RejectsFloatTarget) {
  ExpectError(LossCase("NLLLoss", {{"lp", {2, 3}}, {"y", {2}}}, "mean"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (NLLLoss)", "input 'target' (value 'y')", "int64",
               "float32 [2]"});
}

TEST(NLLLoss, RejectsTargetOfWrongShape) {
  ExpectError(
      LossCase("NLLLoss",
               {{"lp", {2, 3}}, {"y", {2, 3}, Init::kLabels, 0, 0, 3}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (NLLLoss)", "input 'target' (value 'y')", "[2]",
       "got [2, 3]"});
}

TEST(NLLLoss, RejectsUnknownReduction) {
  ExpectError(NLLCase(2, 3, "Mean"), absl::StatusCode::kInvalidArgument,
              {"node 'node'", "'reduction'", "\"mean\", \"sum\" or \"none\"",
               "\"Mean\""});
}

}  // namespace
}  // namespace gradserve::testing
