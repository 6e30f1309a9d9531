#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase FlattenCase(Shape shape, int64_t start_dim) {
  return OpCase("Flatten", {{"x", std::move(shape)}},
                {{"start_dim", start_dim}});
}

OpCase ReshapeCase(Shape shape, std::vector<int64_t> to) {
  return OpCase("Reshape", {{"x", std::move(shape)}}, {{"shape", to}});
}

// The output shape of a case, from a forward run.
Shape OutputShape(const OpCase& c) {
  auto r = RunCase(c, DType::kFloat32);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->outputs.at("out0").shape() : Shape{-1};
}

// Runs forward and backward on fresh tensors and checks that y is x's
// storage and dx is dY's: both passes are views.
void ExpectViews(const OpCase& c, const Shape& y_shape) {
  Tensor x = MakeInput(c.inputs[0], 1);
  Tensor dy = MakeInput({"dy", y_shape}, 2);
  auto r = RunOnValues(c, {x}, dy);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), y_shape);
  EXPECT_EQ(r->outputs.at("out0").raw_data(), x.raw_data());
  EXPECT_EQ(r->gradients.at("x").shape(), x.shape());
  EXPECT_EQ(r->gradients.at("x").raw_data(), dy.raw_data());
}

TEST(Flatten, Gradients) {
  ExpectGradientsCorrect(OpCase("Flatten", {{"x", {2, 3, 4}}}));
  ExpectGradientsCorrect(FlattenCase({1, 5}, 0));
  ExpectGradientsCorrect(FlattenCase({2, 1, 3, 2}, -2));
}

TEST(Flatten, ShapesAsTorch) {
  EXPECT_EQ(OutputShape(OpCase("Flatten", {{"x", {2, 3, 4}}})), (Shape{2, 12}));
  EXPECT_EQ(OutputShape(FlattenCase({2, 3, 4}, 0)), (Shape{24}));
  EXPECT_EQ(OutputShape(FlattenCase({2, 3, 4}, 2)), (Shape{2, 3, 4}));
  EXPECT_EQ(OutputShape(FlattenCase({2, 3, 4}, -1)), (Shape{2, 3, 4}));
  EXPECT_EQ(OutputShape(FlattenCase({2, 3, 4}, -3)), (Shape{24}));
  EXPECT_EQ(OutputShape(FlattenCase({5, 3}, 1)), (Shape{5, 3}));
  EXPECT_EQ(OutputShape(FlattenCase({2, 3, 4, 5}, 1)), (Shape{2, 60}));
  EXPECT_EQ(OutputShape(FlattenCase({}, 0)), (Shape{1}));
}

TEST(Flatten, IsAViewBothWays) {
  ExpectViews(OpCase("Flatten", {{"x", {2, 3, 4}}}), {2, 12});
}

TEST(Flatten, EmptyInputs) {
  ExpectViews(OpCase("Flatten", {{"x", {0, 3, 4}}}), {0, 12});
  ExpectViews(OpCase("Flatten", {{"x", {2, 0, 4}}}), {2, 0});
}

TEST(Flatten, RejectsBadStartDim) {
  ExpectError(
      FlattenCase({2, 3, 4}, 3), absl::StatusCode::kInvalidArgument,
      {"node 'node' (Flatten)", "attribute 'start_dim'", "[-3, 3)", "got 3"});
  ExpectError(FlattenCase({4}, 1), absl::StatusCode::kInvalidArgument,
              {"node 'node' (Flatten)", "attribute 'start_dim'", "got 1"});
}

TEST(Flatten, RejectsWrongAttributeType) {
  ExpectError(
      OpCase("Flatten", {{"x", {2, 3}}},
             {{"start_dim", std::vector<double>{1}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node'", "attribute 'start_dim'", "must be int", "floats"});
}

TEST(Reshape, Gradients) {
  ExpectGradientsCorrect(ReshapeCase({2, 3, 4}, {4, -1}));
  ExpectGradientsCorrect(ReshapeCase({1, 6}, {3, 1, 2}));
  ExpectGradientsCorrect(ReshapeCase({5}, {5, 1}));
}

TEST(Reshape, ShapesAsTorch) {
  EXPECT_EQ(OutputShape(ReshapeCase({2, 3, 4}, {4, -1})), (Shape{4, 6}));
  EXPECT_EQ(OutputShape(ReshapeCase({2, 3, 4}, {-1})), (Shape{24}));
  EXPECT_EQ(OutputShape(ReshapeCase({2, 3, 4}, {2, -1, 3})), (Shape{2, 4, 3}));
  EXPECT_EQ(OutputShape(ReshapeCase({1}, {})), Shape{});
  EXPECT_EQ(OutputShape(ReshapeCase({}, {1, 1})), (Shape{1, 1}));
}

TEST(Reshape, KnownValues) {
  auto r =
      RunOnValues(ReshapeCase({6}, {3, -1}), {F32({6}, {0, 1, 2, 3, 4, 5})},
                  F32({3, 2}, {6, 7, 8, 9, 10, 11}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({3, 2}, {0, 1, 2, 3, 4, 5}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({6}, {6, 7, 8, 9, 10, 11}), 0, "dx");
}

TEST(Reshape, IsAViewBothWays) {
  ExpectViews(ReshapeCase({2, 3, 4}, {6, -1}), {6, 4});
}

TEST(Reshape, ZeroIsALiteralEmptyDim) {
  ExpectViews(ReshapeCase({0, 3}, {3, 0}), {3, 0});
  ExpectViews(ReshapeCase({2, 0}, {0, 5}), {0, 5});
}

TEST(Reshape, Int64Labels) {
  OpCase c("Reshape", {{"labels", {6}, Init::kLabels}},
           {{"shape", std::vector<int64_t>{2, 3}}});
  c.inputs[0].classes = 10;
  Tensor labels = I64({6}, {1, 2, 3, 4, 5, 6});
  auto r = RunOnValues(c, {labels});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), I64({2, 3}, {1, 2, 3, 4, 5, 6}), 0, "y");
}

TEST(Reshape, RejectsTwoInferredDims) {
  ExpectError(
      ReshapeCase({2, 3, 4}, {-1, 2, -1}), absl::StatusCode::kInvalidArgument,
      {"node 'node'", "attribute 'shape'", "at most one -1", "[-1, 2, -1]"});
}

TEST(Reshape, RejectsNegativeDim) {
  ExpectError(ReshapeCase({2, 3}, {-2, -3}), absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'shape'", "[-2, -3]"});
}

TEST(Reshape, RejectsElementCountMismatch) {
  ExpectError(ReshapeCase({3, 4}, {2, 5}), absl::StatusCode::kInvalidArgument,
              {"node 'node' (Reshape)", "attribute 'shape' [2, 5]",
               "12 elements", "input 'x' (value 'x')", "[3, 4]"});
  ExpectError(ReshapeCase({3, 4}, {5, -1}), absl::StatusCode::kInvalidArgument,
              {"node 'node' (Reshape)", "[5, -1]", "input 'x'", "[3, 4]"});
}

TEST(Reshape, RejectsAmbiguousInferredDim) {
  ExpectError(ReshapeCase({0, 3}, {0, -1}), absl::StatusCode::kInvalidArgument,
              {"node 'node' (Reshape)", "[0, -1]", "ambiguous", "[0, 3]"});
}

TEST(Reshape, RequiresShape) {
  ExpectError(OpCase("Reshape", {{"x", {2, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'shape'", "required"});
}

TEST(Reshape, RejectsWrongAttributeType) {
  ExpectError(
      OpCase("Reshape", {{"x", {2, 3}}}, {{"shape", std::string("3x2")}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node'", "attribute 'shape'", "must be ints", "string"});
}

}  // namespace
}  // namespace gradserve::testing
