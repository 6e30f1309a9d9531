// Dropout2d: one draw per channel of each sample, broadcast over the
// spatial dims; its mask [N, C, 1, ...]; torch's rank check.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase Dropout2dCase(Shape x, double p) {
  OpCase c("Dropout2d", {{"x", x, Init::kUniform, 0.5, 1.5}}, {{"p", p}});
  c.num_outputs = 2;
  c.seeded_outputs = {0};
  return c;
}

TEST(Dropout2d, WholeChannelsKeptOrDroppedAndScaled) {
  const int64_t n = 40, ch = 50, plane = 6;
  const double p = 0.3;
  Tensor x = Tensor::Empty(DType::kFloat32, {n, ch, 2, 3});
  std::fill_n(x.data<float>(), x.num_elements(), 1.f);
  auto r = RunOnValues(Dropout2dCase({n, ch, 2, 3}, p), {x});
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor& y = r->outputs.at("out0");
  const Tensor& mask = r->outputs.at("out1");
  ASSERT_EQ(mask.shape(), (Shape{n, ch, 1, 1}));
  int64_t kept = 0;
  for (int64_t j = 0; j < n * ch; ++j) {
    const float m = mask.data<float>()[j];
    ASSERT_TRUE(m == 0 || m == 1) << m;
    kept += m == 1;
    for (int64_t k = 0; k < plane; ++k) {
      ASSERT_FLOAT_EQ(y.data<float>()[j * plane + k],
                      m / static_cast<float>(1 - p));
    }
  }
  const double expected = n * ch * (1 - p),
               sd = std::sqrt(n * ch * p * (1 - p));
  EXPECT_NEAR(static_cast<double>(kept), expected, 5 * sd);
}

TEST(Dropout2d, GivenMaskGradients) {
  OpCase c("Dropout2d", {{"x", {2, 3, 4}}, {"m", {2, 3, 1}, Init::kBernoulli}},
           {{"p", 0.25}});
  c.num_outputs = 2;
  ExpectGradientsCorrect(c);
}

TEST(Dropout2d, RejectsRankOneAndAnElementwiseMask) {
  ExpectError(OpCase("Dropout2d", {{"x", {5}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Dropout2d)", "input 'x'", "rank >= 2", "[5]"});
  ExpectError(
      OpCase("Dropout2d",
             {{"x", {2, 3, 4}}, {"m", {2, 3, 4}, Init::kBernoulli}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (Dropout2d)", "input 'mask'", "[2, 3, 1]", "[2, 3, 4]"});
  ExpectError(OpCase("Dropout2d", {{"x", {2, 3}}}, {{"p", 1.5}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Dropout2d)", "'p'", "in [0, 1]"});
}

}  // namespace
}  // namespace gradserve::testing
