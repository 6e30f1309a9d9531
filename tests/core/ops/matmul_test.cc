#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

TEST(MatMul, Gradients2d) {
  ExpectGradientsCorrect(OpCase("MatMul", {{"a", {4, 5}}, {"b", {5, 3}}}));
}

TEST(MatMul, GradientsOddSizes) {
  ExpectGradientsCorrect(OpCase("MatMul", {{"a", {7, 13}}, {"b", {13, 9}}}));
}

TEST(MatMul, GradientsBatchOne) {
  ExpectGradientsCorrect(OpCase("MatMul", {{"a", {1, 7}}, {"b", {7, 1}}}));
  ExpectGradientsCorrect(
      OpCase("MatMul", {{"a", {1, 3, 4}}, {"b", {1, 4, 2}}}));
}

TEST(MatMul, GradientsBatchedAWithSharedB) {
  ExpectGradientsCorrect(OpCase("MatMul", {{"a", {2, 3, 4}}, {"b", {4, 5}}}));
  ExpectGradientsCorrect(
      OpCase("MatMul", {{"a", {2, 1, 3, 4}}, {"b", {4, 2}}}));
}

TEST(MatMul, GradientsBatchedB) {
  ExpectGradientsCorrect(
      OpCase("MatMul", {{"a", {2, 3, 4}}, {"b", {2, 4, 5}}}));
  ExpectGradientsCorrect(
      OpCase("MatMul", {{"a", {3, 2, 5, 4}}, {"b", {3, 2, 4, 3}}}));
}

TEST(MatMul, GradientOfOneInputOnly) {
  OpCase only_a("MatMul", {{"a", {2, 3, 4}}, {"b", {4, 5}}});
  only_a.inputs[1].differentiable = false;
  ExpectGradientsCorrect(only_a);
  OpCase only_b("MatMul", {{"a", {2, 3, 4}}, {"b", {4, 5}}});
  only_b.inputs[0].differentiable = false;
  ExpectGradientsCorrect(only_b);
}

TEST(MatMul, LongInnerDim) {
  // 1000 float32 products summed per element: rounding grows with K.
  OpCase c("MatMul", {{"a", {3, 1000}}, {"b", {1000, 4}}});
  c.float32_tolerance = 1e-3;
  ExpectGradientsCorrect(c);
}

TEST(MatMul, KnownValues) {
  // torch: a @ b, backward with dY = [[1, 2], [3, 4]].
  OpCase c("MatMul", {{"a", {2, 3}}, {"b", {3, 2}}});
  auto r = RunOnValues(
      c, {F32({2, 3}, {1, 2, 3, 4, 5, 6}), F32({3, 2}, {1, 0, 0, 1, 1, -1})},
      F32({2, 2}, {1, 2, 3, 4}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {4, -1, 10, -1}), 0, "y");
  ExpectClose(r->gradients.at("a"), F32({2, 3}, {1, 2, -1, 3, 4, -1}), 0, "da");
  ExpectClose(r->gradients.at("b"), F32({3, 2}, {13, 18, 17, 24, 21, 30}), 0,
              "db");
}

TEST(MatMul, KnownValuesBatchedB) {
  // Batch 0 multiplies by the identity, batch 1 by 2·identity.
  OpCase c("MatMul", {{"a", {2, 1, 2}}, {"b", {2, 2, 2}}});
  auto r = RunOnValues(
      c,
      {F32({2, 1, 2}, {1, 2, 3, 4}), F32({2, 2, 2}, {1, 0, 0, 1, 2, 0, 0, 2})},
      F32({2, 1, 2}, {1, 1, 1, -1}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 1, 2}, {1, 2, 6, 8}), 0, "y");
  ExpectClose(r->gradients.at("a"), F32({2, 1, 2}, {1, 1, 2, -2}), 0, "da");
  ExpectClose(r->gradients.at("b"), F32({2, 2, 2}, {1, 1, 2, 2, 3, -3, 4, -4}),
              0, "db");
}

TEST(MatMul, CountsFlops) {
  OpCase c("MatMul", {{"a", {2, 3, 4}}, {"b", {4, 5}}});
  auto summary = Describe(
      SingleOpGraph(c),
      {{"a", {DType::kFloat32, {2, 3, 4}}}, {"b", {DType::kFloat32, {4, 5}}}},
      Limits{});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->nodes[0].forward_flops, 2 * 2 * 3 * 4 * 5);
}

TEST(MatMul, EmptyRows) {
  auto r = RunCase(OpCase("MatMul", {{"a", {0, 3}}, {"b", {3, 2}}}),
                   DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 2}));
  EXPECT_EQ(r->gradients.at("a").shape(), (Shape{0, 3}));
  ExpectClose(r->gradients.at("b"), Tensor::Zeros(DType::kFloat32, {3, 2}), 0,
              "db");
}

TEST(MatMul, EmptyInnerDimGivesZeros) {
  auto r = RunCase(OpCase("MatMul", {{"a", {2, 0}}, {"b", {0, 3}}}),
                   DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), Tensor::Zeros(DType::kFloat32, {2, 3}), 0,
              "y");
  EXPECT_EQ(r->gradients.at("a").shape(), (Shape{2, 0}));
  EXPECT_EQ(r->gradients.at("b").shape(), (Shape{0, 3}));
}

TEST(MatMul, EmptyBatch) {
  auto r = RunCase(OpCase("MatMul", {{"a", {0, 2, 3}}, {"b", {0, 3, 4}}}),
                   DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 2, 4}));
  EXPECT_EQ(r->gradients.at("b").shape(), (Shape{0, 3, 4}));
}

TEST(MatMul, RejectsMismatchedInnerDim) {
  ExpectError(OpCase("MatMul", {{"a", {4, 6}}, {"b", {5, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MatMul)", "input 'b'", "6 rows (dim -2)", "[4, 6]",
               "got [5, 3]"});
  ExpectError(OpCase("MatMul", {{"a", {2, 4}}, {"b", {5}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MatMul)", "input 'b'", "4 elements", "got [5]"});
}

TEST(MatMul, RejectsMismatchedBatchDims) {
  ExpectError(OpCase("MatMul", {{"a", {2, 3, 4}}, {"b", {3, 4, 5}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MatMul)", "batch dims", "[2, 3, 4]", "[3, 4, 5]",
               "do not broadcast"});
}

TEST(MatMul, RejectsScalars) {
  ExpectError(OpCase("MatMul", {{"a", {}}, {"b", {4, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (MatMul)", "rank >= 1", "input 'a'", "[]"});
}

// torch.matmul's rules: 1-d operands (a row, a column; the added dim
// dropped), and batch dims that broadcast, b's too, against a without any.
TEST(MatMul, OneDimensionalOperandsAndBroadcastBatches) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{6}, {6}},
      {{4, 6}, {6}},
      {{6}, {6, 3}},
      {{2, 3, 6}, {6}},
      {{6}, {2, 6, 3}},
      {{4, 6}, {2, 6, 3}},
      {{2, 1, 4, 6}, {3, 6, 2}},
      {{3, 1, 4, 6}, {1, 2, 6, 5}},
      {{0, 6}, {2, 6, 3}},
      {{2, 4, 0}, {0}}};
  for (const auto& [a, b] : cases) {
    ExpectGradientsCorrect(OpCase("MatMul", {{"a", a}, {"b", b}}));
    OpCase only_b("MatMul", {{"a", a}, {"b", b}});
    only_b.inputs[0].differentiable = false;
    ExpectGradientsCorrect(only_b);
  }
}

// Values worked out by hand, as torch.matmul gives them.
TEST(MatMul, KnownValuesOfVectorsAndBroadcasts) {
  OpCase dot("MatMul", {{"a", {3}}, {"b", {3}}});
  auto r = RunOnValues(dot, {F32({3}, {1, 2, 3}), F32({3}, {4, 5, 6})},
                       F32({}, {2}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({}, {32}), 0, "a · b");
  ExpectClose(r->gradients.at("a"), F32({3}, {8, 10, 12}), 0, "da");
  ExpectClose(r->gradients.at("b"), F32({3}, {2, 4, 6}), 0, "db");
  // a [2] shared by b [2, 2, 1]: y [2, 1]; da sums over b's batch.
  OpCase shared("MatMul", {{"a", {2}}, {"b", {2, 2, 1}}});
  r = RunOnValues(shared, {F32({2}, {1, 2}), F32({2, 2, 1}, {3, 4, 5, 6})},
                  F32({2, 1}, {1, 10}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 1}, {11, 17}), 0, "y");
  ExpectClose(r->gradients.at("a"), F32({2}, {3 + 50, 4 + 60}), 0, "da");
  ExpectClose(r->gradients.at("b"), F32({2, 2, 1}, {1, 2, 10, 20}), 0, "db");
}

TEST(MatMul, RejectsIntegerInput) {
  ExpectRejectsInt64Input(OpCase("MatMul", {{"a", {2, 3}}, {"b", {3, 2}}}), 1,
                          "b");
}

}  // namespace
}  // namespace gradserve::testing
