// LayerNorm over the last `axes` dims.
#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase LayerNormCase(Shape x, int64_t axes, bool affine) {
  // The bad-input cases ask for more axes than x has: normalized over all.
  const Shape normalized(x.end() - std::min<int64_t>(axes, x.size()), x.end());
  std::vector<TestInput> inputs = {{"x", x, Init::kUniform, -2, 2}};
  inputs.push_back(affine ? TestInput{"w", normalized, Init::kUniform, 0.5, 1.5}
                          : TestInput{""});
  inputs.push_back(affine ? TestInput{"b", normalized} : TestInput{""});
  return OpCase("LayerNorm", inputs, {{"axes", axes}});
}

class LayerNorm
    : public ::testing::TestWithParam<std::tuple<Shape, int64_t, bool>> {};

TEST_P(LayerNorm, Gradients) {
  const auto& [shape, axes, affine] = GetParam();
  ExpectGradientsCorrect(LayerNormCase(shape, axes, affine));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LayerNorm,
    ::testing::Values(std::make_tuple(Shape{4, 6}, 1, true),
                      std::make_tuple(Shape{4, 6}, 1, false),
                      std::make_tuple(Shape{2, 3, 5}, 1, true),
                      std::make_tuple(Shape{2, 3, 5}, 2, true),
                      std::make_tuple(Shape{2, 3, 4, 2}, 3, true),
                      std::make_tuple(Shape{1, 7}, 1, true),
                      std::make_tuple(Shape{5}, 1, true)),
    [](const auto& info) {
      return "Case" + std::to_string(info.index) + "Rank" +
             std::to_string(std::get<0>(info.param).size()) + "Axes" +
             std::to_string(std::get<1>(info.param)) +
             (std::get<2>(info.param) ? "Affine" : "Plain");
    });

TEST(LayerNorm, KnownValues) {
  // Row {1, 2, 3, 6}: mean 3, variance 3.5.
  const double s = std::sqrt(3.5 + 1e-5);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunOnValues(LayerNormCase({1, 4}, 1, true),
                         {F32({1, 4}, {1, 2, 3, 6}), F32({4}, {1, 1, 2, 2}),
                          F32({4}, {0, 0, 0, 1})},
                         Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(
        r->outputs.at("out0"),
        F32({1, 4}, {static_cast<float>(-2 / s), static_cast<float>(-1 / s), 0,
                     static_cast<float>(6 / s + 1)}),
        1e-6, "y");
  }
}

// dL/dx alone, the weight and bias not wanted (buffers, or left out of
// wrt): oneDNN 2.6 has no backward_data with a scale or shift, and this was
// UNIMPLEMENTED.
TEST(LayerNorm, InputGradientAlone) {
  for (const OpCase& base :
       {LayerNormCase({4, 6}, 1, true), LayerNormCase({2, 3, 4}, 2, true)}) {
    for (const std::vector<int>& present : {std::vector<int>{1, 2}, {1}, {2}}) {
      OpCase c = WithWrt(base, {0});
      for (int i : {1, 2}) {
        if (std::find(present.begin(), present.end(), i) == present.end()) {
          c.inputs[i] = TestInput{""};
        }
      }
      ExpectGradientsCorrect(Placed(c, Placements::kAllFeeds));
      ExpectGradientsCorrect(Placed(c, Placements::kMixedRotated));
    }
  }
}

// PyTorch takes any epsilon (its OpInfo samples use 0.5 and -0.5).
TEST(LayerNorm, EpsilonOfEitherSign) {
  for (double epsilon : {0.5, -0.05}) {
    OpCase c = LayerNormCase({2, 3, 4}, 2, true);
    c.attrs["epsilon"] = epsilon;  // x in [-2, 2): variances well above 0.05
    ExpectGradientsCorrect(c);
  }
  OpCase c = LayerNormCase({2, 3}, 1, false);
  c.attrs["epsilon"] = std::nan("");
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (LayerNorm)", "'epsilon'", "finite"});
}

TEST(LayerNorm, RejectsBadInput) {
  ExpectError(LayerNormCase({2, 3}, 3, false),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (LayerNorm)", "'axes'", "in [1, 2]"});
  OpCase c = LayerNormCase({2, 3, 4}, 2, true);
  c.inputs[1].shape = {4};
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"input 'weight'", "[3, 4]", "[4]"});
}

}  // namespace
}  // namespace gradserve::testing
