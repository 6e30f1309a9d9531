// int64 arithmetic as torch 1.13 computes it (values from torch): Add, Sub,
// Mul, Div (trunc, floor, true division), Abs, ReLU, the promoting unary
// ops, Hardtanh, ReLU6, Clamp, Pow, Max/Min and Sum on int64 tensors;
// mixed int64/float operands promoted, with the float operand's gradient
// checked by finite differences; and the errors torch raises.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// Runs a case forward on int64 (or mixed) values in float32.
Tensor Forward(const OpCase& c, std::vector<Tensor> values) {
  auto r = RunOnValues(c, std::move(values));
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return Tensor();
  return r->outputs.at("out0");
}

void ExpectInts(const Tensor& t, const std::vector<int64_t>& want,
                const std::string& what) {
  ASSERT_TRUE(t.defined()) << what;
  ASSERT_EQ(t.dtype(), DType::kInt64) << what;
  ASSERT_EQ(t.num_elements(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(t.data<int64_t>()[i], want[i]) << what << " at " << i;
  }
}

OpCase Pair(const std::string& op, Shape a, Shape b, AttrMap attrs = {}) {
  return OpCase(op,
                {IndexInput("a", std::move(a)), IndexInput("b", std::move(b))},
                std::move(attrs));
}

const Tensor kA = I64({6}, {7, -7, 7, -7, 0, kMax});
const Tensor kB = I64({6}, {2, 2, -2, -2, 5, 1});

TEST(Int64, AddSubMulWrapAsTorch) {
  ExpectInts(Forward(Pair("Add", {6}, {6}), {kA, kB}), {9, -5, 5, -9, 5, kMin},
             "add");
  ExpectInts(Forward(Pair("Sub", {6}, {6}, {{"alpha", 3.0}}), {kA, kB}),
             {1, -13, 13, -1, -15, kMax - 3}, "sub alpha 3");
  ExpectInts(Forward(Pair("Mul", {6}, {6}), {kA, kB}),
             {14, -14, -14, 14, 0, kMax}, "mul");
  // Broadcasting: [2, 1] + [3].
  ExpectInts(Forward(Pair("Add", {2, 1}, {3}),
                     {I64({2, 1}, {10, 20}), I64({3}, {1, 2, 3})}),
             {11, 12, 13, 21, 22, 23}, "broadcast");
}

TEST(Int64, DivRoundsOrPromotesAsTorch) {
  ExpectInts(
      Forward(Pair("Div", {6}, {6}, {{"rounding_mode", std::string("trunc")}}),
              {kA, kB}),
      {3, -3, -3, 3, 0, kMax}, "trunc");
  ExpectInts(
      Forward(Pair("Div", {6}, {6}, {{"rounding_mode", std::string("floor")}}),
              {kA, kB}),
      {3, -4, -4, 3, 0, kMax}, "floor");
  // INT64_MIN / -1 wraps instead of trapping.
  ExpectInts(
      Forward(Pair("Div", {1}, {1}, {{"rounding_mode", std::string("floor")}}),
              {I64({1}, {kMin}), I64({1}, {-1})}),
      {kMin}, "min / -1");
  const Tensor y = Forward(Pair("Div", {6}, {6}), {kA, kB});
  ASSERT_EQ(y.dtype(), DType::kFloat32);
  ExpectClose(y, F32({6}, {3.5, -3.5, -3.5, 3.5, 0, 9.223372036854776e18f}), 0,
              "true division");
}

TEST(Int64, IntegerDivisionByZeroNamesTheDivisor) {
  auto r = RunOnValues(
      Pair("Div", {3}, {3}, {{"rounding_mode", std::string("floor")}}),
      {I64({3}, {1, 2, 3}), I64({3}, {1, 0, 2})});
  ASSERT_FALSE(r.ok());
  ExpectStatus(r.status(), absl::StatusCode::kInvalidArgument,
               {"node 'node' (Div)", "integer division by zero", "input 'b'",
                "flat index 1"});
}

TEST(Int64, NonIntegralAlphaIsRefused) {
  ExpectError(Pair("Add", {3}, {3}, {{"alpha", 0.5}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Add)", "'alpha'", "integer", "int64"});
}

// An int64 operand against a float one is promoted: y is float, and the
// float operand's gradient is right (the int64 one gets none).
TEST(Int64, MixedOperandsPromoteAndDifferentiateTheFloatOne) {
  const Tensor y = Forward(OpCase("Mul", {{"a", {2}}, IndexInput("b", {2})}),
                           {F32({2}, {1.5, 2.0}), I64({2}, {2, 3})});
  ExpectClose(y, F32({2}, {3, 6}), 0, "mul");
  for (const std::string op : {"Add", "Sub", "Mul"}) {
    ExpectGradientsCorrect(
        OpCase(op, {{"a", {2, 3}}, IndexInput("b", {3}, 5)}));
    ExpectGradientsCorrect(
        OpCase(op, {IndexInput("a", {2, 1}, 5), {"b", {3}}}));
  }
  ExpectGradientsCorrect(OpCase(
      "Div",
      {IndexInput("a", {2, 3}, 5), {"b", {3}, Init::kAwayFromZero, 0.5, 2}}));
  ExpectGradientsCorrect(OpCase("Pow", {{"x", {2, 3}, Init::kUniform, 0.5, 2},
                                        IndexInput("exponent", {3}, 3)}));
}

TEST(Int64, AbsReluAndPromotingUnaryOps) {
  const Tensor x = I64({4}, {-3, 0, 2, kMin});
  ExpectInts(Forward(OpCase("Abs", {IndexInput("x", {4})}), {x}),
             {3, 0, 2, kMin}, "abs");
  ExpectInts(Forward(OpCase("ReLU", {IndexInput("x", {4})}), {x}), {0, 0, 2, 0},
             "relu");
  const Tensor e =
      Forward(OpCase("Exp", {IndexInput("x", {3})}), {I64({3}, {-1, 0, 2})});
  ASSERT_EQ(e.dtype(), DType::kFloat32);
  ExpectClose(e, F32({3}, {0.3678794503211975f, 1, 7.389056205749512f}), 1e-7,
              "exp");
  const Tensor s =
      Forward(OpCase("Sqrt", {IndexInput("x", {2})}), {I64({2}, {4, 2})});
  ExpectClose(s, F32({2}, {2, 1.4142135381698608f}), 1e-7, "sqrt");
}

TEST(Int64, HardtanhRelu6AndClamp) {
  const Tensor x = I64({4}, {-3, 1, 5, 8});
  ExpectInts(Forward(OpCase("Hardtanh", {IndexInput("x", {4})}), {x}),
             {-1, 1, 1, 1}, "hardtanh");
  // torch casts the bounds to int64: -1.5 -> -1, 2.5 -> 2.
  ExpectInts(Forward(OpCase("Hardtanh", {IndexInput("x", {4})},
                            {{"min_val", -1.5}, {"max_val", 2.5}}),
                     {x}),
             {-1, 1, 2, 2}, "hardtanh bounds");
  ExpectInts(Forward(OpCase("ReLU6", {IndexInput("x", {4})}), {x}),
             {0, 1, 5, 6}, "relu6");
  ExpectInts(
      Forward(OpCase("Clamp", {IndexInput("x", {4})}, {{"min", 2.0}}), {x}),
      {2, 2, 5, 8}, "clamp int scalar");
  ExpectInts(
      Forward(OpCase("Clamp", {IndexInput("x", {4}), IndexInput("min", {4}),
                               IndexInput("max", {1})}),
              {x, I64({4}, {0, 2, 2, 2}), I64({1}, {6})}),
      {0, 2, 5, 6}, "clamp int tensors");
  // A non-integral bound promotes, as torch.clamp(int, min=2.5).
  const Tensor y =
      Forward(OpCase("Clamp", {IndexInput("x", {4})}, {{"min", 2.5}}), {x});
  ASSERT_EQ(y.dtype(), DType::kFloat32);
  ExpectClose(y, F32({4}, {2.5, 2.5, 5, 8}), 0, "clamp promoted");
  // A float tensor bound promotes too, and gets its gradient.
  ExpectGradientsCorrect(OpCase(
      "Clamp",
      {IndexInput("x", {2, 3}, 3), {"min", {3}, Init::kUniform, 0.2, 0.8}}));
}

TEST(Int64, PowAsTorchsPowi) {
  ExpectInts(Forward(OpCase("Pow", {IndexInput("x", {4})}, {{"exponent", 3.0}}),
                     {I64({4}, {2, -3, 0, 5})}),
             {8, -27, 0, 125}, "scalar exponent");
  ExpectInts(
      Forward(
          OpCase("Pow", {IndexInput("x", {5}), IndexInput("exponent", {5})}),
          {I64({5}, {2, 1, -1, 0, 3}), I64({5}, {-1, -2, -3, 0, 2})}),
      {0, 1, -1, 1, 9}, "tensor exponent");
  const Tensor y =
      Forward(OpCase("Pow", {IndexInput("x", {2})}, {{"exponent", 0.5}}),
              {I64({2}, {2, 3})});
  ExpectClose(y, F32({2}, {1.4142135381698608f, 1.7320507764816284f}), 1e-7,
              "promoted");
  ExpectError(OpCase("Pow", {IndexInput("x", {2})}, {{"exponent", -1.0}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Pow)", "Integers to negative integer powers"});
}

TEST(Int64, MaxMinAndSum) {
  const Tensor x = I64({2, 3}, {3, -1, 4, 1, 5, -9});
  ExpectInts(Forward(OpCase("Sum", {IndexInput("x", {2, 3})}), {x}), {3},
             "sum");
  ExpectInts(
      Forward(OpCase("Sum", {IndexInput("x", {2, 3})}, {{"axes", int64_t{1}}}),
              {x}),
      {6, -3}, "sum axis 1");
  ExpectInts(
      Forward(OpCase("Sum", {IndexInput("x", {2})}), {I64({2}, {kMax, 1})}),
      {kMin}, "sum wraps");
  ExpectInts(
      Forward(OpCase("Max", {IndexInput("x", {2, 3})}, {{"axes", int64_t{1}}}),
              {x}),
      {4, 5}, "amax");
  OpCase with_indices("Min", {IndexInput("x", {2, 3})}, {{"axes", int64_t{1}}});
  with_indices.num_outputs = 2;
  auto r = RunOnValues(with_indices, {x});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectInts(r->outputs.at("out0"), {-1, -9}, "min");
  ExpectInts(r->outputs.at("out1"), {1, 2}, "min indices");
  // Promoted with a dtype: Sum and Mean compute in it.
  auto mean = RunOnValues(OpCase("Mean", {IndexInput("x", {2, 3})},
                                 {{"dtype", std::string("float32")}}),
                          {x});
  ASSERT_TRUE(mean.ok()) << mean.status();
  ExpectClose(mean->outputs.at("out0"), F32({}, {0.5}), 1e-7, "mean dtype");
}

TEST(Int64, MatMulAndLinear) {
  const Tensor a = I64({2, 3}, {1, -2, 3, 4, 5, -6});
  ExpectInts(Forward(Pair("MatMul", {2, 3}, {3, 2}),
                     {a, I64({3, 2}, {7, 8, -9, 10, 11, -12})}),
             {58, -48, -83, 154}, "matmul");
  ExpectInts(Forward(Pair("MatMul", {2, 3}, {3}), {a, I64({3}, {1, 2, 3})}),
             {6, -4}, "matrix-vector");
  ExpectInts(Forward(Pair("MatMul", {1, 1}, {1, 1}),
                     {I64({1, 1}, {kMax}), I64({1, 1}, {2})}),
             {-2}, "matmul wraps");
  OpCase linear("Linear", {IndexInput("x", {2, 3}), IndexInput("w", {2, 3}),
                           IndexInput("b", {2})});
  ExpectInts(
      Forward(linear, {I64({2, 3}, {1, 2, 3, -1, 0, 2}),
                       I64({2, 3}, {1, 0, -1, 2, 2, 2}), I64({2}, {5, -5})}),
      {3, 7, 2, -3}, "linear");
  // torch refuses int64 against float: "expected scalar type".
  ExpectError(OpCase("Linear", {{"x", {2, 3}}, IndexInput("w", {2, 3})}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Linear)", "input 'weight'", "int64"});
}

// Convolutions and average pooling of int64 tensors: torch's integer
// kernels (avg_pool2d divides each window's sum toward zero).
TEST(Int64, ConvolutionsAndAvgPool) {
  const Tensor x = I64({1, 1, 6}, {1, -2, 3, 4, 0, 5});
  const Tensor w = I64({1, 1, 3}, {1, 2, -1});
  OpCase conv("Conv1d", {IndexInput("x", {1, 1, 6}), IndexInput("w", {1, 1, 3}),
                         IndexInput("b", {1})});
  ExpectInts(Forward(conv, {x, w, I64({1}, {10})}), {4, 10, 21, 9}, "conv1d");
  OpCase transposed(
      "ConvTranspose1d",
      {IndexInput("x", {1, 1, 6}), IndexInput("w", {1, 1, 3}), {"", {}}});
  ExpectInts(Forward(transposed, {x, w}), {1, 0, -2, 12, 5, 1, 10, -5},
             "conv_transpose1d");
  const Tensor x2 = I64({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, -7, 8, 9});
  OpCase pool("AvgPool2d", {IndexInput("x", {1, 1, 3, 3})},
              {{"kernel", std::vector<int64_t>{2, 2}},
               {"stride", std::vector<int64_t>{1, 1}}});
  ExpectInts(Forward(pool, {x2}), {3, 4, 2, 7}, "avg_pool2d");
  pool.attrs["padding"] = std::vector<int64_t>{1, 1};
  ExpectInts(Forward(pool, {x2}),
             {0, 0, 1, 0, 1, 3, 4, 2, 0, 2, 7, 3, -1, 0, 4, 2}, "padded");
  ExpectError(OpCase("Conv1d", {{"x", {1, 1, 6}}, IndexInput("w", {1, 1, 3})}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Conv1d)", "input 'weight'", "int64"});
  ExpectError(OpCase("MaxPool2d", {IndexInput("x", {1, 1, 3, 3})},
                     {{"kernel", std::vector<int64_t>{2, 2}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MaxPool2d)", "input 'x'", "int64"});
}

}  // namespace
}  // namespace gradserve::testing
