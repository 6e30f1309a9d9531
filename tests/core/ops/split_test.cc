// Split: chunks by size and sections, gradients with some chunks unseeded,
// bad attributes.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

TEST(Split, SplitChunks) {
  OpCase c("Split", {{"x", {5, 2}}}, {{"split_size_or_sections", int64_t{2}}});
  c.num_outputs = 3;
  auto r = RunOnValues(c, {Iota({5, 2})});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(FloatValues(r->outputs.at("out0")),
            (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(FloatValues(r->outputs.at("out2")), (std::vector<float>{8, 9}));
  // Only one chunk seeded: the others' part of dL/dx is 0.
  c.seeded_outputs = {1};
  ExpectGradientsCorrect(c);
}

TEST(Split, RejectsBadAttributes) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  OpCase split("Split", {{"x", {5, 2}}},
               {{"split_size_or_sections", int64_t{2}}});
  expect(split, {"gives 3 chunks", "defines 1 outputs"});
  split.attrs["split_size_or_sections"] = V{2, 2};
  expect(split, {"must sum to the dim's size 5, got 4"});
  // Sizes past int64's range saturate (they used to wrap the sum).
  split.attrs["split_size_or_sections"] = V{4, INT64_MAX, 1};
  expect(split, {"must sum to the dim's size 5, got 72057594037927936"});
  split.attrs["split_size_or_sections"] = int64_t{0};
  expect(split, {"a chunk size >= 1"});
  expect(OpCase("Split", {{"x", {}}}, {{"split_size_or_sections", int64_t{1}}}),
         {"rank >= 1"});
}

}  // namespace
}  // namespace gradserve::testing
