#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"

namespace gradserve::testing {
namespace {

OpCase BCECase(Shape shape, const std::string& reduction) {
  return LossCase("BCELoss",
                  {{"p", shape, Init::kUniform, 0.05, 0.95},
                   {"t", shape, Init::kUniform, 0, 1}},
                  reduction);
}

TEST(BCELoss, GradientsMean) {
  ExpectGradientsCorrect(BCECase({3, 4}, "mean"));
}

TEST(BCELoss, GradientsSum) { ExpectGradientsCorrect(BCECase({2, 5}, "sum")); }

TEST(BCELoss, BatchOne) { ExpectGradientsCorrect(BCECase({1, 1}, "mean")); }

// Values from torch 1.13: F.binary_cross_entropy(p, t, reduction=...) and
// its backward, with p = 0 and 1 where the logs are clamped at −100. For the
// target's gradient at p = 0 and 1 torch 1.13 gives ±inf (it leaves the
// clamps out there); the op gives the derivative of the clamped loss, ±100.
TEST(BCELoss, KnownValuesMatchTorch) {
  NamedTensors in = {{"p", F32({5}, {0.25, 0.5, 0.875, 0, 1})},
                     {"t", F32({5}, {1, 0, 0.5, 0.25, 0.75})}};
  ExpectLoss("BCELoss", "mean", in, DType::kFloat64, 1e-15, 10.637185601766403,
             {{"p", F64({5}, {-0.8, 0.4, 0.6857142857142857,
                              -50000000199.790146, 50000000199.790146})},
              {"t", F64({5}, {0.21972245773362192, 0, -0.3891820298110626, 20,
                              -20})}});
  ExpectLoss("BCELoss", "sum", in, DType::kFloat64, 1e-15, 53.185928008832015,
             {{"p", F64({5}, {-4, 2, 3.4285714285714284, -250000000998.9507,
                              250000000998.9507})},
              {"t", F64({5}, {1.0986122886681096, 0, -1.945910149055313, 100,
                              -100})}});
}

// The target's gradient alone: Backward then has only the probabilities.
TEST(BCELoss, TargetGradientAlone) {
  ExpectLoss("BCELoss", "sum",
             {{"p", F32({2}, {0.25, 0.5})}, {"t", F32({2}, {1, 0})}},
             DType::kFloat64, 1e-15, 2.0794415416798357,
             {{"t", F64({2}, {1.0986122886681096, 0})}});
}

// torch's ε in max(p·(1 − p), ε) is the float 1e-12f, in float64 too.
TEST(BCELoss, GradientEpsilonIsTorchs) {
  ExpectLoss("BCELoss", "sum",
             {{"p", F64({2}, {1e-13, 0})}, {"t", F64({2}, {0, 1})}},
             DType::kFloat64, 1e-15, 100.0000000000001,
             {{"p", F64({2}, {0.10000000039958029, -1000000003995.8029})}});
}

TEST(BCELoss, EmptyInputs) {
  ExpectEmptyReductions("BCELoss", {{"p", F32({0}, {})}, {"t", F32({0}, {})}},
                        {"p", "t"});
}

TEST(BCELoss, RejectsProbabilityAboveOne) {
  ExpectFailure(RunLoss("BCELoss", "mean",
                        {{"p", F32({2, 2}, {0.5, 0.25, 1.5, 0.75})},
                         {"t", F32({2, 2}, {1, 0, 1, 0})}},
                        {"p"}),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (BCELoss)", "input 'probabilities' (value 'p')",
                 "has 1.5 at flat index 2", "[0, 1]"});
}

TEST(BCELoss, RejectsNegativeAndNaNProbabilities) {
  ExpectFailure(
      RunLoss("BCELoss", "sum",
              {{"p", F32({2}, {-0.25, 0.5})}, {"t", F32({2}, {1, 0})}}, {"p"}),
      absl::StatusCode::kInvalidArgument,
      {"input 'probabilities' (value 'p')", "has -0.25 at flat index 0"});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  ExpectFailure(
      RunLoss("BCELoss", "sum",
              {{"p", F32({2}, {0.5, nan})}, {"t", F32({2}, {1, 0})}}, {"p"}),
      absl::StatusCode::kInvalidArgument,
      {"input 'probabilities' (value 'p')", "has nan at flat index 1"});
}

TEST(BCELoss, RejectsShapeMismatch) {
  ExpectError(LossCase("BCELoss", {{"p", {4}}, {"t", {2, 2}}}, "mean"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (BCELoss)", "input 'target' (value 't')",
               "input 'probabilities' (value 'p')", "[4]", "got [2, 2]"});
}

TEST(BCELoss, RejectsUnknownReduction) {
  ExpectError(BCECase({3}, "max"), absl::StatusCode::kInvalidArgument,
              {"node 'node'", "'reduction'", "\"mean\", \"sum\" or \"none\"",
               "\"max\""});
}

}  // namespace
}  // namespace gradserve::testing
