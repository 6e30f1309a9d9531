// AdaptiveAvgPool2d and AdaptiveMaxPool2d: windows of torch's
// adaptive_*_pool2d, overlapping ones and outputs larger than the input
// included; unbatched x; the max's indices.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

TEST(AdaptivePool, Gradients) {
  const std::vector<std::pair<Shape, V>> cases = {{{2, 3, 8, 8}, {5, 7}},
                                                  {{1, 2, 4, 3}, {5, 5}},
                                                  {{2, 4, 6, 6}, {1, 1}},
                                                  {{1, 16, 5, 7}, {2, 3}},
                                                  {{2, 1, 3, 4}, {3, 4}}};
  for (const std::string op : {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"}) {
    for (const auto& [x, size] : cases) {
      ExpectGradientsCorrect(OpCase(op, {{"x", x}}, {{"output_size", size}}));
      Shape unbatched(x.begin() + 1, x.end());
      ExpectUnbatchedIsABatchOfOne(
          OpCase(op, {{"x", unbatched}}, {{"output_size", size}}), {0});
    }
    ExpectGradientsCorrect(
        OpCase(op, {{"x", {1, 2, 5, 5}}}, {{"output_size", int64_t{2}}}));
  }
}

// x = 1..12 as [1, 1, 3, 4] to [2, 3]; dL/dy = 1..6. Values from torch 1.13.
TEST(AdaptivePool, KnownValues) {
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i + 1);
  const Tensor x = F32({1, 1, 3, 4}, v);
  const Tensor seed = F32({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    OpCase avg("AdaptiveAvgPool2d", {{"x", {1, 1, 3, 4}}},
               {{"output_size", V{2, 3}}});
    auto r = RunOnValues(avg, {x}, seed, dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 2, 3}, {3.5, 4.5, 5.5, 7.5, 8.5, 9.5}), 1e-6, "avg");
    ExpectClose(r->gradients.at("x"),
                F32({1, 1, 3, 4}, {0.25, 0.75, 1.25, 0.75, 1.25, 3, 4, 2.25, 1,
                                   2.25, 2.75, 1.5}),
                1e-6, "avg dx");
    OpCase max("AdaptiveMaxPool2d", {{"x", {1, 1, 3, 4}}},
               {{"output_size", V{2, 3}}});
    max.num_outputs = 2;
    r = RunOnValues(max, {x}, seed, dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({1, 1, 2, 3}, {6, 7, 8, 10, 11, 12}),
                0, "max");
    const Tensor& i = r->outputs.at("out1");
    EXPECT_EQ(std::vector<int64_t>(i.data<int64_t>(), i.data<int64_t>() + 6),
              (std::vector<int64_t>{5, 6, 7, 9, 10, 11}));
    ExpectClose(r->gradients.at("x"),
                F32({1, 1, 3, 4}, {0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6}), 0,
                "max dx");
  }
}

TEST(AdaptivePool, RejectsBadInput) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("AdaptiveAvgPool2d", {{"x", {1, 1, 4, 4}}}),
         {"node 'node' (AdaptiveAvgPool2d)", "'output_size'", "required"});
  expect(OpCase("AdaptiveMaxPool2d", {{"x", {1, 1, 4, 4}}},
                {{"output_size", V{0, 2}}}),
         {"'output_size'", ">= 1"});
  expect(
      OpCase("AdaptiveAvgPool2d", {{"x", {4, 4}}}, {{"output_size", V{2, 2}}}),
      {"input 'x'", "rank 3 to 4", "[4, 4]"});
  expect(OpCase("AdaptiveAvgPool2d", {{"x", {1, 2, 0, 4}}},
                {{"output_size", V{2, 2}}}),
         {"input 'x'", "H and W of at least 1", "[1, 2, 0, 4]"});
}

}  // namespace
}  // namespace gradserve::testing
