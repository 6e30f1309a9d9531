// Max and Min: amax's even split over ties and NaN propagation, max(dim)'s
// first index and single-element gradient, empty dims refused.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

// x = [[1, 3, 3], [2, 2, 0]]; values from torch 1.13.
const Tensor kTies = F32({2, 3}, {1, 3, 3, 2, 2, 0});

TEST(Extremum, AmaxSplitsTiesEvenly) {
  auto r = RunOnValues(OpCase("Max", {{"x", {2, 3}}}, {{"axes", V{1}}}),
                       {kTies}, F32({2}, {1, 1}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2}, {3, 2}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {0, 0.5, 0.5, 0.5, 0.5, 0}), 0,
              "dx");
}

TEST(Extremum, MaxWithIndicesPicksTheFirst) {
  OpCase c("Max", {{"x", {2, 3}}}, {{"axes", V{-1}}, {"keepdims", int64_t{1}}});
  c.num_outputs = 2;
  auto r = RunOnValues(c, {kTies}, F32({2, 1}, {1, 2}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 1}, {3, 2}), 0, "y");
  const Tensor& i = r->outputs.at("out1");
  EXPECT_EQ(i.shape(), (Shape{2, 1}));
  EXPECT_EQ(std::vector<int64_t>(i.data<int64_t>(), i.data<int64_t>() + 2),
            (V{1, 0}));
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {0, 1, 0, 2, 0, 0}), 0, "dx");
  OpCase m("Min", {{"x", {2, 3}}}, {{"axes", V{0}}});
  m.num_outputs = 2;
  r = RunOnValues(m, {F32({2, 3}, {1, 2, 0, 1, 0, 0})}, F32({3}, {1, 1, 1}));
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor& j = r->outputs.at("out1");
  EXPECT_EQ(std::vector<int64_t>(j.data<int64_t>(), j.data<int64_t>() + 3),
            (V{0, 1, 0}));
}

// torch.max(dim) stops at the first NaN; amax is NaN with a NaN gradient.
TEST(Extremum, NaNPropagates) {
  const Tensor x = F32({1, 4}, {1, NAN, 3, NAN});
  OpCase c("Max", {{"x", {1, 4}}}, {{"axes", V{1}}});
  c.num_outputs = 2;
  auto r = RunOnValues(c, {x}, F32({1}, {1}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::isnan(r->outputs.at("out0").data<float>()[0]));
  EXPECT_EQ(r->outputs.at("out1").data<int64_t>()[0], 1);
  ExpectClose(r->gradients.at("x"), F32({1, 4}, {0, 1, 0, 0}), 0, "dx");
  r = RunOnValues(OpCase("Max", {{"x", {1, 4}}}), {x}, F32({}, {1}));
  ASSERT_TRUE(r.ok()) << r.status();
  for (float g : r->gradients.at("x").values<float>())
    EXPECT_TRUE(std::isnan(g));
}

TEST(Extremum, Gradients) {
  for (const std::string op : {"Max", "Min"}) {
    ExpectGradientsCorrect(OpCase(op, {{"x", {3, 2, 4}}}, {{"axes", V{0, 2}}}));
    OpCase c(op, {{"x", {3, 4}}}, {{"axes", V{0}}});
    c.num_outputs = 2;
    ExpectGradientsCorrect(c);
    ExpectGradientsCorrect(OpCase(op, {{"x", {}}}));
  }
}

TEST(Extremum, RejectsBadAxes) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Max", {{"x", {0, 3}}}, {{"axes", V{0}}}),
         {"node 'node' (Max)", "cannot reduce dim 0", "[0, 3]", "size 0"});
  expect(OpCase("Min", {{"x", {0, 3}}}), {"cannot reduce dim 0"});
  OpCase two("Max", {{"x", {2, 3}}}, {{"axes", V{0, 1}}});
  two.num_outputs = 2;
  expect(two, {"indices output needs exactly one axis", "[0, 1]"});
  expect(OpCase("Max", {{"x", {2, 3}}}, {{"axes", V{1, -1}}}),
         {"attribute 'axes' names dim 1 more than once"});
  expect(OpCase("Min", {{"x", {2, 3}}}, {{"axes", V{2}}}),
         {"attribute 'axes'"});
}

}  // namespace
}  // namespace gradserve::testing
