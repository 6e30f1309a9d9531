#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"

namespace gradserve::testing {
namespace {

OpCase LogitsCase(Shape shape, const std::string& reduction) {
  return LossCase(
      "BCEWithLogitsLoss",
      {{"x", shape, Init::kUniform, -3, 3}, {"t", shape, Init::kUniform, 0, 1}},
      reduction);
}

TEST(BCEWithLogitsLoss, GradientsMean) {
  ExpectGradientsCorrect(LogitsCase({3, 4}, "mean"));
}

TEST(BCEWithLogitsLoss, GradientsSum) {
  ExpectGradientsCorrect(LogitsCase({2, 5}, "sum"));
}

TEST(BCEWithLogitsLoss, BatchOne) {
  ExpectGradientsCorrect(LogitsCase({1}, "mean"));
}

// Values from torch 1.13: F.binary_cross_entropy_with_logits(x, t, ...) and
// its backward; x = ±100 would overflow a naive log(1 + e^−x).
TEST(BCEWithLogitsLoss, KnownValuesMatchTorch) {
  NamedTensors in = {{"x", F32({5}, {0.5, -2, 0, 100, -100})},
                     {"t", F32({5}, {1, 0, 0.5, 0.25, 0.75})}};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const double tol = dtype == DType::kFloat64 ? 1e-15 : 1e-6;
    ExpectLoss("BCEWithLogitsLoss", "mean", in, dtype, tol, 30.258830435156607,
               {{"x", F64({5}, {-0.07550813375962909, 0.02384058440442351, 0,
                                0.15, -0.15})},
                {"t", F64({5}, {-0.1, 0.4, 0, -20, 20})}});
    ExpectLoss("BCEWithLogitsLoss", "sum", in, dtype, tol, 151.29415217578304,
               {{"x", F64({5}, {-0.3775406687981454, 0.11920292202211755, 0,
                                0.75, -0.75})},
                {"t", F64({5}, {-0.5, 2, 0, -100, 100})}});
  }
}

// The target's gradient alone: Backward then has only the logits.
TEST(BCEWithLogitsLoss, TargetGradientAlone) {
  ExpectLoss("BCEWithLogitsLoss", "mean",
             {{"x", F32({2}, {0.5, -2})}, {"t", F32({2}, {1, 0.25})}},
             DType::kFloat64, 1e-15, 0.5505024976115396,
             {{"t", F64({2}, {-0.25, 1})}});
}

TEST(BCEWithLogitsLoss, ExtremeLogitsStayFinite) {
  ExpectLoss("BCEWithLogitsLoss", "sum",
             {{"x", F32({2}, {1e30f, -1e30f})}, {"t", F32({2}, {1, 0})}},
             DType::kFloat32, 0, 0, {{"x", F64({2}, {0, 0})}});
}

TEST(BCEWithLogitsLoss, EmptyInputs) {
  ExpectEmptyReductions("BCEWithLogitsLoss",
                        {{"x", F32({2, 0}, {})}, {"t", F32({2, 0}, {})}},
                        {"x", "t"});
}

TEST(BCEWithLogitsLoss, RejectsShapeMismatch) {
  ExpectError(
      LossCase("BCEWithLogitsLoss", {{"x", {2, 3}}, {"t", {3, 2}}}, "sum"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (BCEWithLogitsLoss)", "input 'target' (value 't')",
       "input 'logits' (value 'x')", "[2, 3]", "got [3, 2]"});
}

TEST(BCEWithLogitsLoss, RejectsIntTarget) {
  ExpectError(
      LossCase("BCEWithLogitsLoss",
               {{"x", {3}}, {"t", {3}, Init::kLabels, 0, 0, 2}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (BCEWithLogitsLoss)", "input 'target' (value 't')",
       "float32", "int64 [3]"});
}

TEST(BCEWithLogitsLoss, RejectsUnknownReduction) {
  ExpectError(
      LogitsCase({3}, ""), absl::StatusCode::kInvalidArgument,
      {"node 'node'", "'reduction'", "\"mean\", \"sum\" or \"none\"", "\"\""});
}

}  // namespace
}  // namespace gradserve::testing
