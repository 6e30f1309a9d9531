// KLDivLoss: torch's values and gradients (xlogy's 0 at t = 0, its NaN
// gradient there), "batchmean", and log_target checked.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"

namespace gradserve::testing {
namespace {

// Values from torch 1.13: F.kl_div(x, q, reduction=...) and its backward.
TEST(KLDivLoss, KnownValuesMatchTorch) {
  NamedTensors in = {{"x", F32({2, 2}, {-0.5, -2.0, -0.125, -3.0})},
                     {"q", F32({2, 2}, {0.25, 0.75, 0.5, 1.0})}};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const double tol = dtype == DType::kFloat64 ? 1e-14 : 1e-6;
    // sum = Σ q·(log q − x).
    double sum = 0;
    const double x[] = {-0.5, -2.0, -0.125, -3.0}, q[] = {0.25, 0.75, 0.5, 1.0};
    std::vector<double> dx, dq;
    for (int i = 0; i < 4; ++i) {
      sum += q[i] * (std::log(q[i]) - x[i]);
      dx.push_back(-q[i] / 2);
      dq.push_back((std::log(q[i]) + 1 - x[i]) / 2);
    }
    ExpectLoss("KLDivLoss", "batchmean", in, dtype, tol, sum / 2,
               {{"x", F64({2, 2}, dx)}, {"q", F64({2, 2}, dq)}});
    ExpectLoss(
        "KLDivLoss", "mean", in, dtype, tol, sum / 4,
        {{"x", F64({2, 2}, {dx[0] / 2, dx[1] / 2, dx[2] / 2, dx[3] / 2})}});
  }
}

// torch: xlogy(0, 0) = 0 in the loss, and d/dt = log t + t/t − x is NaN at
// t = 0; dx = −t = −0.
TEST(KLDivLoss, ZeroTargetAsTorch) {
  auto r = RunLoss("KLDivLoss", "sum",
                   {{"x", F32({2}, {-0.5, -1.0})}, {"q", F32({2}, {0.0, 1.0})}},
                   {"x", "q"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(LossValue(*r), 1.0);
  const Tensor dq = r->gradients.at("q").CastFloat(DType::kFloat64);
  EXPECT_TRUE(std::isnan(dq.data<double>()[0]));
  EXPECT_DOUBLE_EQ(dq.data<double>()[1], 2.0);
  const Tensor dx = r->gradients.at("x").CastFloat(DType::kFloat64);
  EXPECT_EQ(dx.data<double>()[0], 0.0);
  EXPECT_DOUBLE_EQ(dx.data<double>()[1], -1.0);
}

TEST(KLDivLoss, LogTargetGradients) {
  OpCase c = LossCase("KLDivLoss",
                      {{"x", {2, 3}}, {"q", {2, 3}, Init::kUniform, -2, 0}},
                      "batchmean");
  c.attrs["log_target"] = int64_t{1};
  ExpectGradientsCorrect(c);
}

TEST(KLDivLoss, RejectsBadLogTarget) {
  OpCase c = LossCase("KLDivLoss", {{"x", {3}}, {"q", {3}}}, "sum");
  c.attrs["log_target"] = int64_t{2};
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (KLDivLoss)", "'log_target'", "0 or 1", "2"});
}

TEST(KLDivLoss, RejectsUnknownReduction) {
  ExpectError(LossCase("KLDivLoss", {{"x", {3}}, {"q", {3}}}, "batch"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (KLDivLoss)", "'reduction'",
               "\"mean\", \"batchmean\", \"sum\" or \"none\"", "\"batch\""});
}

}  // namespace
}  // namespace gradserve::testing
