// Transpose, Permute, Squeeze and Unsqueeze: shapes, element order, int64
// inputs, bad attributes.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

TEST(Permute, PermuteAndTransposeMoveElements) {
  auto r =
      RunOnValues(OpCase("Permute", {{"x", {2, 3, 2}}}, {{"dims", V{2, 0, 1}}}),
                  {Iota({2, 3, 2})});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(FloatValues(r->outputs.at("out0")),
            (std::vector<float>{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}));
  OpCase t("Transpose", {{"x", {2, 3}, Init::kLabels}},
           {{"dim0", int64_t{-1}}, {"dim1", int64_t{0}}});
  t.inputs[0].classes = 9;
  auto i = RunOnValues(t, {I64({2, 3}, {1, 2, 3, 4, 5, 6})});
  ASSERT_TRUE(i.ok()) << i.status();
  const Tensor& y = i->outputs.at("out0");
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(std::vector<int64_t>(y.data<int64_t>(), y.data<int64_t>() + 6),
            (V{1, 4, 2, 5, 3, 6}));
  ExpectGradientsCorrect(
      OpCase("Permute", {{"x", {2, 3, 4, 1}}}, {{"dims", V{3, 1, 0, 2}}}));
}

TEST(Permute, SqueezeAndUnsqueezeShapes) {
  auto shape = [](OpCase c) {
    auto metas = OutputMetas(SingleOpGraph(c), CaseArgs(c, SingleOpGraph(c)));
    EXPECT_TRUE(metas.ok()) << metas.status();
    return metas.ok() ? (*metas)[0].shape : Shape{-1};
  };
  EXPECT_EQ(shape(OpCase("Squeeze", {{"x", {2, 1, 3, 1}}})), (Shape{2, 3}));
  EXPECT_EQ(
      shape(OpCase("Squeeze", {{"x", {2, 1, 3, 1}}}, {{"dims", V{0, -1}}})),
      (Shape{2, 1, 3}));
  EXPECT_EQ(shape(OpCase("Squeeze", {{"x", {}}}, {{"dims", V{0}}})), (Shape{}));
  EXPECT_EQ(shape(OpCase("Unsqueeze", {{"x", {2, 3}}}, {{"dims", V{0, 3}}})),
            (Shape{1, 2, 3, 1}));
  EXPECT_EQ(shape(OpCase("Unsqueeze", {{"x", {}}}, {{"dims", V{-1}}})),
            (Shape{1}));
}

// F.pad(arange(12).reshape(1, 3, 4), ...) in torch 1.13.

TEST(Permute, RejectsBadAttributes) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Permute", {{"x", {2, 3}}}, {{"dims", V{0, 0}}}),
         {"node 'node' (Permute)", "names dim 0 more than once"});
  expect(OpCase("Permute", {{"x", {2, 3}}}, {{"dims", V{0}}}),
         {"must list the 2 dims", "[2, 3]"});
  expect(OpCase("Transpose", {{"x", {2, 3}}},
                {{"dim0", int64_t{0}}, {"dim1", int64_t{2}}}),
         {"attribute 'dim1'"});
  expect(OpCase("Unsqueeze", {{"x", {2}}}, {{"dims", V{0, -3}}}),
         {"names dim 0 more than once"});
}

}  // namespace
}  // namespace gradserve::testing
