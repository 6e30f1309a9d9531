// ReLU, LeakyReLU, ELU, GELU (erf and tanh), SiLU, Mish, Abs, Sqrt, Tanh,
// Sigmoid, Exp, Log, Scale.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

struct EltwiseCase {
  std::string name;
  std::string op;
  AttrMap attrs;
  Init init;
  double lo, hi;
  // y and dL/dx (for dL/dy = 1) at kPoints, from torch 1.13 in float64.
  std::vector<float> y, dx;
};

const Shape kPointsShape = {5};
const std::vector<float> kPoints = {-2.0, -0.5, 0.0, 0.5, 2.0};

std::vector<EltwiseCase> Cases() {
  return {
      {"ReLU",
       "ReLU",
       {},
       Init::kAwayFromZero,
       0.1,
       2,
       {0, 0, 0, 0.5, 2},
       {0, 0, 0, 1, 1}},
      {"LeakyReLU",
       "LeakyReLU",
       {{"alpha", 0.1}},
       Init::kAwayFromZero,
       0.1,
       2,
       {-0.2, -0.05, 0, 0.5, 2},
       {0.1, 0.1, 0.1, 1, 1}},
      // A negative slope differentiates from x (y no longer tells x's sign).
      {"LeakyReLUNegativeSlope",
       "LeakyReLU",
       {{"alpha", -0.5}},
       Init::kAwayFromZero,
       0.1,
       2,
       {1, 0.25, 0, 0.5, 2},
       {-0.5, -0.5, -0.5, 1, 1}},
      {"ELU",
       "ELU",
       {},
       Init::kAwayFromZero,
       0.1,
       2,
       {-0.8646647, -0.3934693, 0, 0.5, 2},
       {0.1353353, 0.6065307, 1, 1, 1}},
      {"ELUAlpha",
       "ELU",
       {{"alpha", 0.5}},
       Init::kAwayFromZero,
       0.1,
       2,
       {-0.4323324, -0.1967347, 0, 0.5, 2},
       {0.0676676, 0.3032653, 0.5, 1, 1}},
      {"GELU",
       "GELU",
       {},
       Init::kUniform,
       -3,
       3,
       {-0.0455003, -0.1542688, 0, 0.3457312, 1.9544997},
       {-0.0852318, 0.1325049, 0.5, 0.8674951, 1.0852318}},
      {"GELUTanh",
       "GELU",
       {{"approximate", std::string("tanh")}},
       Init::kUniform,
       -3,
       3,
       {-0.04540231, -0.154286, 0, 0.345714, 1.954598},
       {-0.08609926, 0.1326301, 0.5, 0.8673699, 1.086099}},
      {"GELUNone",
       "GELU",
       {{"approximate", std::string("none")}},
       Init::kUniform,
       -3,
       3,
       {-0.0455003, -0.1542688, 0, 0.3457312, 1.9544997},
       {-0.0852318, 0.1325049, 0.5, 0.8674951, 1.0852318}},
      {"Tanh",
       "Tanh",
       {},
       Init::kUniform,
       -3,
       3,
       {-0.9640276, -0.4621172, 0, 0.4621172, 0.9640276},
       {0.0706508, 0.7864477, 1, 0.7864477, 0.0706508}},
      {"Sigmoid",
       "Sigmoid",
       {},
       Init::kUniform,
       -4,
       4,
       {0.1192029, 0.3775407, 0.5, 0.6224593, 0.8807971},
       {0.1049936, 0.2350037, 0.25, 0.2350037, 0.1049936}},
      {"Exp",
       "Exp",
       {},
       Init::kUniform,
       -2,
       2,
       {0.1353353, 0.6065307, 1, 1.6487213, 7.3890561},
       {0.1353353, 0.6065307, 1, 1.6487213, 7.3890561}},
      {"SiLU",
       "SiLU",
       {},
       Init::kUniform,
       -3,
       3,
       {-0.2384058, -0.1887703, 0, 0.3112297, 1.761594},
       {-0.09078425, 0.2600388, 0.5, 0.7399612, 1.090784}},
      {"Mish",
       "Mish",
       {},
       Init::kUniform,
       -3,
       3,
       {-0.2525015, -0.2207438, 0, 0.3752452, 1.943959},
       {-0.1083551, 0.2895107, 0.6, 0.8864244, 1.069318}},
      {"Abs",
       "Abs",
       {},
       Init::kAwayFromZero,
       0.1,
       2,
       {2, 0.5, 0, 0.5, 2},
       {-1, -1, 0, 1, 1}},
      {"Scale",
       "Scale",
       {{"factor", -2.5}},
       Init::kUniform,
       -1,
       1,
       {5, 1.25, 0, -1.25, -5},
       {-2.5, -2.5, -2.5, -2.5, -2.5}},
      {"ScaleIntFactor",
       "Scale",
       {{"factor", int64_t{3}}},
       Init::kUniform,
       -1,
       1,
       {-6, -1.5, 0, 1.5, 6},
       {3, 3, 3, 3, 3}},
  };
}

class Eltwise : public ::testing::TestWithParam<EltwiseCase> {
 protected:
  OpCase Case(Shape shape) const {
    const EltwiseCase& e = GetParam();
    TestInput x{"x", std::move(shape), e.init, e.lo, e.hi};
    return OpCase(e.op, {x}, e.attrs);
  }
};

TEST_P(Eltwise, GradientsOverShapes) {
  for (Shape shape :
       {Shape{4, 6}, Shape{1, 3}, Shape{7}, Shape{2, 3, 4, 5}, Shape{}}) {
    SCOPED_TRACE(ShapeToString(shape));
    ExpectGradientsCorrect(Case(shape));
  }
}

TEST_P(Eltwise, KnownValues) {
  const EltwiseCase& e = GetParam();
  auto r = RunOnValues(Case(kPointsShape), {F32(kPointsShape, kPoints)},
                       F32(kPointsShape, std::vector<float>(5, 1.f)));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32(kPointsShape, e.y), 1e-6, "y");
  ExpectClose(r->gradients.at("x"), F32(kPointsShape, e.dx), 1e-6, "dx");
}

TEST_P(Eltwise, EmptyInput) {
  auto r = RunOnValues(Case({0, 3}), {Tensor::Empty(DType::kFloat32, {0, 3})},
                       Tensor::Empty(DType::kFloat32, {0, 3}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 3}));
  EXPECT_EQ(r->gradients.at("x").shape(), (Shape{0, 3}));
}

// ReLU, Abs (int64 y) and Tanh, Sigmoid, Exp, Log, Sqrt (promoted) take
// int64 x: int64_test.cc. The others refuse it, as torch's kernels do.
TEST_P(Eltwise, RejectsInt64UnlessTorchTakesIt) {
  const std::string op = GetParam().op;
  for (const char* takes :
       {"ReLU", "Abs", "Tanh", "Sigmoid", "Exp", "Log", "Sqrt"}) {
    if (op == takes) return;
  }
  ExpectRejectsInt64Input(Case({3}), 0, "x");
}

INSTANTIATE_TEST_SUITE_P(Ops, Eltwise, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Log, ValuesAndDomain) {
  OpCase c("Log", {{"x", {5}}});
  auto r =
      RunOnValues(c, {F32({5}, {0.5, 1, 2, 4, -1})}, F32({5}, {1, 1, 1, 1, 1}));
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor& y = r->outputs.at("out0");
  // float32 is ln in double rounded once, as accurate as torch.log (oneDNN's
  // vectorised log gave log(1) = -1.4e-6).
  EXPECT_EQ(y.data<float>()[0], static_cast<float>(std::log(0.5)));
  EXPECT_EQ(y.data<float>()[1], 0.0f);
  EXPECT_EQ(y.data<float>()[3], static_cast<float>(std::log(4.0)));
  EXPECT_TRUE(std::isnan(y.data<float>()[4]));  // as torch.log(-1)
  EXPECT_NEAR(r->gradients.at("x").data<float>()[2], 0.5f, 1e-7);
}

TEST(Log, Float32IsTheRoundedDoubleEverywhere) {
  std::vector<float> xs;
  for (int i = 0; i < 4096; ++i) {
    xs.push_back(std::ldexp(1.0f + static_cast<float>(i) / 4096, i % 64 - 32));
  }
  const int64_t n = static_cast<int64_t>(xs.size());
  OpCase c("Log", {{"x", {n}}});
  auto r = RunOnValues(c, {F32({n}, xs)}, F32({n}, std::vector<float>(n, 1)));
  ASSERT_TRUE(r.ok()) << r.status();
  const float* y = r->outputs.at("out0").data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const float want = static_cast<float>(std::log(static_cast<double>(xs[i])));
    ASSERT_EQ(y[i], want) << "x = " << xs[i];
  }
}

TEST(Log, Gradients) {
  ExpectGradientsCorrect(
      OpCase("Log", {{"x", {3, 4}, Init::kUniform, 0.5, 3}}));
}

// Values from torch 1.13 (dL/dy = 1); NaN below 0 as torch.sqrt.
TEST(Sqrt, ValuesAndDomain) {
  OpCase c("Sqrt", {{"x", {5}}});
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunOnValues(c, {F32({5}, {0.25, 1, 4, 9, 0.01})},
                         F32({5}, {1, 1, 1, 1, 1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({5}, {0.5, 1, 2, 3, 0.1}), 1e-6,
                "y");
    ExpectClose(r->gradients.at("x"), F32({5}, {1, 0.5, 0.25, 0.1666667, 5}),
                1e-6, "dx");
  }
  auto r = RunOnValues(c, {F32({5}, {-1, 1, 1, 1, 1})});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::isnan(r->outputs.at("out0").data<float>()[0]));
  ExpectGradientsCorrect(
      OpCase("Sqrt", {{"x", {3, 4}, Init::kUniform, 0.5, 3}}));
}

TEST(Eltwise, RejectsBadAttributes) {
  ExpectError(OpCase("ReLU", {{"x", {2}}}, {{"alpha", 0.1}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "unknown attribute 'alpha'"});
  ExpectError(
      OpCase("LeakyReLU", {{"x", {2}}}, {{"alpha", std::string("big")}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node'", "'alpha' must be float", "string"});
  ExpectError(
      OpCase("GELU", {{"x", {2}}}, {{"approximate", std::string("sigmoid")}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (GELU)", "'approximate'", "\"none\" or \"tanh\"",
       "sigmoid"});
}

}  // namespace
}  // namespace gradserve::testing
