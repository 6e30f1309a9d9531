// Pow: torch's values and gradients at 0^0, 0^negative, negative bases and
// torch's scalar-exponent shortcuts; both exponent forms; bad attributes.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

// NaN matches NaN, inf matches inf of its sign, others within 1e-12.
void ExpectValues(const Tensor& t, const std::vector<double>& want,
                  const std::string& what) {
  const Tensor d = t.CastFloat(DType::kFloat64);
  ASSERT_EQ(d.num_elements(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const double got = d.data<double>()[i];
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got)) << what << "[" << i << "] = " << got;
    } else if (std::isinf(want[i])) {
      EXPECT_EQ(got, want[i]) << what << "[" << i << "]";
    } else {
      EXPECT_NEAR(got, want[i], 1e-12 * (1 + std::abs(want[i])))
          << what << "[" << i << "]";
    }
  }
}

constexpr double kInf = INFINITY;
constexpr double kNaN = NAN;

// torch 1.13, float64: torch.pow(b, e) and its gradients under ones.
TEST(Pow, TensorExponentAtZeroAndNegativeBases) {
  OpCase c("Pow", {{"x", {6}}, {"e", {6}}});
  auto r = RunOnValues(
      c, {F32({6}, {0, 0, 0, -2, -2, 2}), F32({6}, {0, 2, -1, 3, 0.5, 0})},
      F32({6}, {1, 1, 1, 1, 1, 1}), DType::kFloat64);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectValues(r->outputs.at("out0"), {1, 0, kInf, -8, kNaN, 1}, "y");
  ExpectValues(r->gradients.at("x"), {0, 0, -kInf, 12, kNaN, 0}, "dx");
  ExpectValues(r->gradients.at("e"), {0, 0, -kInf, kNaN, kNaN, std::log(2.0)},
               "de");
}

TEST(Pow, ScalarExponentsAsTorch) {
  const Tensor x = F32({3}, {-2, 0, 3});
  const Tensor ones = F32({3}, {1, 1, 1});
  const std::vector<
      std::tuple<double, std::vector<double>, std::vector<double>>>
      cases = {
          {0, {1, 1, 1}, {0, 0, 0}},
          {1, {-2, 0, 3}, {1, 1, 1}},
          {2, {4, 0, 9}, {-4, 0, 6}},
          {0.5, {kNaN, 0, std::sqrt(3.0)}, {kNaN, kInf, 0.5 / std::sqrt(3.0)}},
          {-1, {-0.5, kInf, 1.0 / 3}, {-0.25, -kInf, -1.0 / 9}},
          {2.5,
           {kNaN, 0, std::pow(3.0, 2.5)},
           {kNaN, 0, 2.5 * std::pow(3.0, 1.5)}}};
  for (const auto& [e, y, dx] : cases) {
    SCOPED_TRACE(e);
    auto r = RunOnValues(OpCase("Pow", {{"x", {3}}}, {{"exponent", e}}), {x},
                         ones, DType::kFloat64);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectValues(r->outputs.at("out0"), y, "y");
    ExpectValues(r->gradients.at("x"), dx, "dx");
  }
}

TEST(Pow, Gradients) {
  ExpectGradientsCorrect(
      OpCase("Pow", {{"x", {2, 3}, Init::kUniform, 0.3, 2}, {"e", {1, 3}}}));
  ExpectGradientsCorrect(OpCase("Pow", {{"x", {2, 3}, Init::kUniform, -2, 2}},
                                {{"exponent", -2.0}}));
}

TEST(Pow, RejectsBadExponents) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Pow", {{"x", {2}}}),
         {"node 'node' (Pow)", "exponent is missing"});
  expect(OpCase("Pow", {{"x", {2}}, {"e", {2}}}, {{"exponent", 2.0}}),
         {"attribute 'exponent' and input 'exponent'", "both"});
  expect(OpCase("Pow", {{"x", {2}}, {"e", {3}}}), {"do not broadcast"});
}

}  // namespace
}  // namespace gradserve::testing
