#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase ReduceCase(const std::string& op, Shape shape, std::vector<int64_t> axes,
                  int64_t keepdims = 0) {
  return OpCase(op, {{"x", std::move(shape)}},
                {{"axes", std::move(axes)}, {"keepdims", keepdims}});
}

class ReduceGradients : public ::testing::TestWithParam<std::string> {};

TEST_P(ReduceGradients, AllAxesByDefault) {
  ExpectGradientsCorrect(OpCase(GetParam(), {{"x", {3, 4}}}));
}

TEST_P(ReduceGradients, AllAxesKeepDims) {
  ExpectGradientsCorrect(ReduceCase(GetParam(), {2, 3, 4}, {}, 1));
}

TEST_P(ReduceGradients, OneAxis) {
  for (int64_t keepdims : {0, 1}) {
    ExpectGradientsCorrect(ReduceCase(GetParam(), {5, 3}, {0}, keepdims));
    ExpectGradientsCorrect(ReduceCase(GetParam(), {5, 3}, {-1}, keepdims));
  }
}

TEST_P(ReduceGradients, SeparatedAxesRank3) {
  for (int64_t keepdims : {0, 1}) {
    ExpectGradientsCorrect(ReduceCase(GetParam(), {3, 4, 5}, {0, 2}, keepdims));
  }
}

TEST_P(ReduceGradients, AdjacentAndNegativeAxesRank4) {
  for (int64_t keepdims : {0, 1}) {
    ExpectGradientsCorrect(
        ReduceCase(GetParam(), {2, 3, 4, 5}, {-1, 1, 2}, keepdims));
    ExpectGradientsCorrect(
        ReduceCase(GetParam(), {2, 3, 4, 5}, {1, 3}, keepdims));
  }
}

TEST_P(ReduceGradients, BatchOneAndSizeOneDims) {
  ExpectGradientsCorrect(ReduceCase(GetParam(), {1, 7}, {1}));
  ExpectGradientsCorrect(ReduceCase(GetParam(), {1, 7}, {0}, 1));
  ExpectGradientsCorrect(ReduceCase(GetParam(), {3, 1, 5}, {0, 1}));
}

TEST_P(ReduceGradients, OnlySizeOneAxesIsAView) {
  OpCase c = ReduceCase(GetParam(), {3, 1, 4}, {1});
  ExpectGradientsCorrect(c);
  GraphDef g = SingleOpGraph(c);
  ComputeArgs args;
  Tensor x = MakeInput(c.inputs[0], 1);
  args.feeds["x"] = x;
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{3, 4}));
  EXPECT_EQ(r->outputs.at("out0").raw_data(), x.raw_data());
}

TEST_P(ReduceGradients, LargeReduction) {
  OpCase c = ReduceCase(GetParam(), {1000, 1000}, {});
  c.inputs[0].lo = 0;  // all positive: the sum grows to 5e5
  // The float32 sum of 1e6 values stays within the default 1e-4 of the
  // float64 one. The finite differences need a larger step instead: a 1e-6
  // change to one of 1e6 values is lost to float64 rounding of a 5e5 sum,
  // and Sum and Mean are linear, so a large step costs no accuracy.
  c.fd_epsilon = 1e-2;
  ExpectGradientsCorrect(c);
}

TEST_P(ReduceGradients, MoreAlternatingGroupsThanOneDnnDims) {
  // 14 alternating reduced and kept dims cannot merge: the sums walk 7 kept
  // and 7 summed groups.
  OpCase c = ReduceCase(GetParam(), Shape(14, 2), {0, 2, 4, 6, 8, 10, 12});
  ExpectGradientsCorrect(c);
}

TEST_P(ReduceGradients, ScalarInput) {
  ExpectGradientsCorrect(ReduceCase(GetParam(), {}, {}));
  ExpectGradientsCorrect(ReduceCase(GetParam(), {}, {-1}, 1));
}

TEST_P(ReduceGradients, EmptyInputWithNonEmptyOutput) {
  auto r = RunCase(ReduceCase(GetParam(), {0, 3}, {0}), DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor& y = r->outputs.at("out0");
  ASSERT_EQ(y.shape(), (Shape{3}));
  for (float v : y.values<float>()) {
    // torch: sum over an empty axis is 0, the mean is NaN.
    if (GetParam() == "Sum") {
      EXPECT_EQ(v, 0.f);
    } else {
      EXPECT_TRUE(std::isnan(v)) << v;
    }
  }
  EXPECT_EQ(r->gradients.at("x").shape(), (Shape{0, 3}));
}

TEST_P(ReduceGradients, EmptyInputAllAxes) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunCase(ReduceCase(GetParam(), {2, 0}, {}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    Tensor y = r->outputs.at("out0").CastFloat(DType::kFloat64);
    ASSERT_EQ(y.shape(), Shape{});
    if (GetParam() == "Sum") {
      EXPECT_EQ(y.data<double>()[0], 0.0);
    } else {
      EXPECT_TRUE(std::isnan(y.data<double>()[0]));
    }
  }
}

TEST_P(ReduceGradients, EmptyOutput) {
  auto r = RunCase(ReduceCase(GetParam(), {0, 3}, {1}, 1), DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 1}));
  EXPECT_EQ(r->gradients.at("x").shape(), (Shape{0, 3}));
}

TEST_P(ReduceGradients, RejectsOutOfRangeAxis) {
  ExpectError(ReduceCase(GetParam(), {2, 3}, {0, 2}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (" + GetParam() + ")", "attribute 'axes'",
               "[-2, 2)", "got 2"});
  ExpectError(ReduceCase(GetParam(), {2, 3}, {-3}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'axes'", "got -3"});
}

TEST_P(ReduceGradients, RejectsDuplicateAxes) {
  ExpectError(ReduceCase(GetParam(), {2, 3}, {1, -1}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (" + GetParam() + ")", "attribute 'axes'",
               "more than once", "[1, -1]"});
}

TEST_P(ReduceGradients, RejectsBadKeepDims) {
  ExpectError(ReduceCase(GetParam(), {2, 3}, {0}, 2),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'keepdims'", "0 or 1", "got 2"});
}

TEST_P(ReduceGradients, RejectsWrongAttributeType) {
  OpCase c(GetParam(), {{"x", {2, 3}}}, {{"axes", 1.5}});
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'axes'", "must be ints", "float"});
}

// Sum takes int64 x (int64_test.cc); Mean only with a dtype, as torch.
TEST(Reduce, MeanRejectsInt64WithoutDtype) {
  OpCase c("Mean", {IndexInput("x", {2, 3}, 5)});
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (Mean)", "input 'x'", "int64", "dtype"});
}

INSTANTIATE_TEST_SUITE_P(Reduce, ReduceGradients,
                         ::testing::Values("Sum", "Mean"));

// Values checked with torch.sum / torch.mean on x = [[1, 2, 3], [4, 5, 6]].
TEST(Reduce, KnownValues) {
  const Tensor x = F32({2, 3}, {1, 2, 3, 4, 5, 6});
  struct Known {
    std::string op;
    std::vector<int64_t> axes;
    int64_t keepdims;
    Tensor y;
  };
  const Known cases[] = {
      {"Sum", {}, 0, Tensor::Scalar<float>(21)},
      {"Mean", {}, 0, Tensor::Scalar<float>(3.5)},
      {"Sum", {0}, 0, F32({3}, {5, 7, 9})},
      {"Sum", {0}, 1, F32({1, 3}, {5, 7, 9})},
      {"Mean", {-1}, 1, F32({2, 1}, {2, 5})},
      {"Mean", {0, 1}, 1, F32({1, 1}, {3.5})},
  };
  for (const Known& k : cases) {
    SCOPED_TRACE(k.op);
    auto r = RunOnValues(ReduceCase(k.op, {2, 3}, k.axes, k.keepdims), {x});
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), k.y, 1e-7, "y");
  }
}

TEST(Reduce, KnownGradients) {
  // torch: x.mean(1).backward([1, 2]) gives rows of 1/3 and 2/3; sum gives
  // rows of 1 and 2.
  const Tensor x = F32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto mean =
      RunOnValues(ReduceCase("Mean", {2, 3}, {1}), {x}, F32({2}, {1, 2}));
  ASSERT_TRUE(mean.ok()) << mean.status();
  const float third = 1.f / 3;
  ExpectClose(
      mean->gradients.at("x"),
      F32({2, 3}, {third, third, third, 2 * third, 2 * third, 2 * third}), 1e-7,
      "dx of Mean");
  auto sum = RunOnValues(ReduceCase("Sum", {2, 3}, {1}), {x}, F32({2}, {1, 2}));
  ASSERT_TRUE(sum.ok()) << sum.status();
  ExpectClose(sum->gradients.at("x"), F32({2, 3}, {1, 1, 1, 2, 2, 2}), 0,
              "dx of Sum");
}

// float32 sums of many elements against a float64 sum of the same values.
// The probe found Sum of 2^28 twos giving 2^28, of 209,715,200 ones 2^27,
// and errors 10-200 times PyTorch's from 2^24 elements on (oneDNN's
// reduction accumulates in float32). Accumulated in double, what is left is
// the final rounding to float32: |error| <= 2^-24 · Σ|x| and a little.
constexpr double kBound = 0x1p-23;

// Σ x and Σ |x| in double, for the float32 values of x.
std::pair<double, double> Float64Sums(const Tensor& x) {
  double sum = 0, abs_sum = 0;
  for (float v : x.values<float>()) {
    sum += v;
    abs_sum += std::abs(v);
  }
  return {sum, abs_sum};
}

Tensor Filled(Shape shape, float value) {
  Tensor t = Tensor::Empty(DType::kFloat32, std::move(shape));
  std::fill_n(t.data<float>(), t.num_elements(), value);
  return t;
}

float SumOf(const std::string& op, const Tensor& x) {
  auto r = RunOnValues(ReduceCase(op, x.shape(), {}), {x});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->outputs.at("out0").data<float>()[0] : NAN;
}

TEST(ReduceAccuracy, SumsOfTheProbeAreExact) {
  EXPECT_EQ(SumOf("Sum", Filled({int64_t{1} << 28}, 2)), 0x1p29);
  EXPECT_EQ(SumOf("Sum", Filled({209715200}, 1)), 209715200.f);
  EXPECT_EQ(SumOf("Mean", Filled({209715200}, 1)), 1.f);
}

TEST(ReduceAccuracy, Float32SumOf2To25ValuesWithinFloat32Rounding) {
  for (double lo : {0.0, -1.0}) {
    SCOPED_TRACE(absl::StrCat("uniform in [", lo, ", 1)"));
    const Tensor x =
        MakeInput({"x", {int64_t{1} << 25}, Init::kUniform, lo, 1.0}, 11);
    const auto [exact, abs_sum] = Float64Sums(x);
    EXPECT_LE(std::abs(SumOf("Sum", x) - exact), kBound * abs_sum);
    const double n = static_cast<double>(x.num_elements());
    EXPECT_LE(std::abs(SumOf("Mean", x) - exact / n), kBound * abs_sum / n);
  }
}

// Every output of a reduction along `axis` of x [rows, cols] against the
// float64 sum of its values.
void ExpectAxisSumsAccurate(const Tensor& x, int64_t axis) {
  SCOPED_TRACE(absl::StrCat("axis ", axis));
  auto r = RunOnValues(ReduceCase("Sum", x.shape(), {axis}), {x});
  ASSERT_TRUE(r.ok()) << r.status();
  const float* y = r->outputs.at("out0").data<float>();
  const int64_t rows = x.dim(0), cols = x.dim(1);
  const int64_t outputs = axis == 0 ? cols : rows;
  const int64_t length = axis == 0 ? rows : cols;
  const int64_t step = axis == 0 ? cols : 1;
  int failures = 0;
  for (int64_t o = 0; o < outputs && failures < 5; ++o) {
    const float* p = x.data<float>() + (axis == 0 ? o : o * cols);
    double exact = 0, abs_sum = 0;
    for (int64_t k = 0; k < length; ++k) {
      exact += p[k * step];
      abs_sum += std::abs(p[k * step]);
    }
    if (!(std::abs(y[o] - exact) <= kBound * abs_sum)) {
      ADD_FAILURE() << "y[" << o << "] = " << y[o] << ", exact " << exact;
      ++failures;
    }
  }
}

TEST(ReduceAccuracy, RowAndColumnSumsWithinFloat32Rounding) {
  const Tensor tall =
      MakeInput({"x", {int64_t{1} << 22, 8}, Init::kUniform, 0, 1}, 12);
  ExpectAxisSumsAccurate(tall, 0);
  ExpectAxisSumsAccurate(tall, 1);
  const Tensor wide =
      MakeInput({"x", {8, int64_t{1} << 22}, Init::kUniform, -1, 1}, 13);
  ExpectAxisSumsAccurate(wide, 0);
  ExpectAxisSumsAccurate(wide, 1);
}

TEST(ReduceAccuracy, BroadcastGradientWithinFloat32Rounding) {
  // y = a + b with b [1] broadcast over a [2^25]: dL/db = Σ dY.
  OpCase c("Add", {{"a", {int64_t{1} << 25}}, {"b", {1}}});
  const Tensor dy =
      MakeInput({"dy", {int64_t{1} << 25}, Init::kUniform, 0, 1}, 14);
  auto r = RunOnValues(c, {Filled({int64_t{1} << 25}, 0), Filled({1}, 0)}, dy);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto [exact, abs_sum] = Float64Sums(dy);
  EXPECT_LE(std::abs(r->gradients.at("b").data<float>()[0] - exact),
            kBound * abs_sum);
}

}  // namespace
}  // namespace gradserve::testing
