// L1Loss, SmoothL1Loss and HuberLoss: torch's values and gradients, and
// their attributes checked before anything runs.
#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"

namespace gradserve::testing {
namespace {

const NamedTensors& Inputs() {
  static const auto* in =
      new NamedTensors{{"p", F32({2, 3}, {0.5, -1.25, 2, 3, 0, -0.75})},
                       {"t", F32({2, 3}, {1, 0.5, -2, 3, 0.25, 0.25})}};
  return *in;
}

// Values from torch 1.13: F.l1_loss(p, t, reduction=...) and its backward.
TEST(L1Loss, KnownValuesMatchTorch) {
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const double tol = dtype == DType::kFloat64 ? 1e-15 : 1e-6;
    const double s = 1.0 / 6;
    ExpectLoss("L1Loss", "mean", Inputs(), dtype, tol, 1.25,
               {{"p", F64({2, 3}, {-s, -s, s, 0, -s, -s})},
                {"t", F64({2, 3}, {s, s, -s, 0, s, s})}});
    ExpectLoss("L1Loss", "sum", Inputs(), dtype, tol, 7.5,
               {{"p", F64({2, 3}, {-1, -1, 1, 0, -1, -1})}});
  }
}

// beta = delta = 1 (the defaults): the two agree; torch's values.
TEST(SmoothL1AndHuberLoss, KnownValuesMatchTorch) {
  for (const char* op : {"SmoothL1Loss", "HuberLoss"}) {
    for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
      const double tol = dtype == DType::kFloat64 ? 1e-15 : 1e-6;
      ExpectLoss(op, "sum", Inputs(), dtype, tol, 5.40625,
                 {{"p", F64({2, 3}, {-0.5, -1, 1, 0, -0.25, -1})},
                  {"t", F64({2, 3}, {0.5, 1, -1, 0, 0.25, 1})}});
    }
  }
}

OpCase WithAttr(const std::string& op, const std::string& name, double v) {
  OpCase c = LossCase(op, {{"p", {3}}, {"t", {3}}}, "mean");
  c.attrs[name] = v;
  return c;
}

TEST(SmoothL1Loss, BetaZeroIsL1Loss) {
  OpCase smooth = WithAttr("SmoothL1Loss", "beta", 0.0);
  ExpectGradientsCorrect(smooth);
  auto a = RunCase(smooth, DType::kFloat64);
  auto b = RunCase(LossCase("L1Loss", {{"p", {3}}, {"t", {3}}}, "mean"),
                   DType::kFloat64);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectClose(a->outputs.at("out0"), b->outputs.at("out0"), 0, "loss");
}

TEST(SmoothL1Loss, RejectsNegativeBeta) {
  ExpectError(WithAttr("SmoothL1Loss", "beta", -0.5),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (SmoothL1Loss)", "'beta'", ">= 0", "-0.5"});
}

TEST(HuberLoss, RejectsNonPositiveDelta) {
  for (double delta : {0.0, -1.0}) {
    ExpectError(WithAttr("HuberLoss", "delta", delta),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (HuberLoss)", "'delta'", "> 0"});
  }
}

TEST(L1Loss, RejectsBatchMean) {
  ExpectError(LossCase("L1Loss", {{"p", {3}}, {"t", {3}}}, "batchmean"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (L1Loss)", "'reduction'",
               "\"mean\", \"sum\" or \"none\"", "\"batchmean\""});
}

}  // namespace
}  // namespace gradserve::testing
