// Gather and IndexSelect: torch's values, repeated indices summed in the
// gradient, out-of-range indices named, bad shapes.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

const Tensor kX = F32({2, 3}, {1, 2, 3, 4, 5, 6});

TEST(Gather, ValuesAndRepeatedIndices) {
  OpCase g("Gather", {{"x", {2, 3}}, IndexInput("i", {2, 2})},
           {{"dim", int64_t{1}}});
  auto r = RunOnValues(g, {kX, I64({2, 2}, {2, 2, 0, 1})},
                       F32({2, 2}, {1, 2, 3, 4}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {3, 3, 4, 5}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {0, 0, 3, 3, 4, 0}), 0, "dx");
  OpCase s("IndexSelect", {{"x", {2, 3}}, IndexInput("i", {3})},
           {{"dim", int64_t{0}}});
  r = RunOnValues(s, {kX, I64({3}, {1, 1, 0})},
                  F32({3, 3}, {1, 1, 1, 2, 2, 2, 3, 3, 3}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({3, 3}, {4, 5, 6, 4, 5, 6, 1, 2, 3}),
              0, "y");
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {3, 3, 3, 3, 3, 3}), 0, "dx");
}

TEST(Gather, OutOfRangeIndicesAreNamed) {
  OpCase g("Gather", {{"x", {2, 3}}, IndexInput("i", {2, 2})},
           {{"dim", int64_t{1}}});
  auto r = RunOnValues(g, {kX, I64({2, 2}, {0, 1, 3, 0})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* part : {"node 'node' (Gather)", "index 3 at [1, 0]",
                           "input 'index' (value 'i')", "dim 1", "size 3"}) {
    EXPECT_NE(r.status().message().find(part), std::string::npos)
        << r.status() << " lacks " << part;
  }
  OpCase s("IndexSelect", {{"x", {2, 3}}, IndexInput("i", {2})},
           {{"dim", int64_t{-1}}});
  r = RunOnValues(s, {kX, I64({2}, {0, -1})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("index -1 at [1]"), std::string::npos)
      << r.status();
}

// wrap_negative = 1 (ONNX's Gather, GatherElements): an index in [-size, 0)
// counts from the end, in values and gradients; one below -size is named.
TEST(Gather, WrappedNegativeIndicesCountFromTheEnd) {
  const AttrMap wrap = {{"dim", int64_t{1}}, {"wrap_negative", int64_t{1}}};
  OpCase g("Gather", {{"x", {2, 3}}, IndexInput("i", {2, 2})}, wrap);
  auto r = RunOnValues(g, {kX, I64({2, 2}, {-1, 2, -3, -2})},
                       F32({2, 2}, {1, 2, 3, 4}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {3, 3, 4, 5}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {0, 0, 3, 3, 4, 0}), 0, "dx");
  OpCase s("IndexSelect", {{"x", {2, 3}}, IndexInput("i", {3})}, wrap);
  r = RunOnValues(s, {kX, I64({3}, {-1, 0, -3})},
                  F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 3}, {3, 1, 1, 6, 4, 4}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({2, 3}, {5, 0, 1, 11, 0, 4}), 0, "dx");
  r = RunOnValues(s, {kX, I64({3}, {0, -4, 1})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("index -4 at [1]"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("[-3, 3)"), std::string::npos)
      << r.status();
  ExpectError(OpCase("Gather", {{"x", {2, 3}}, IndexInput("i", {2, 2})},
                     {{"dim", int64_t{1}}, {"wrap_negative", int64_t{2}}}),
              absl::StatusCode::kInvalidArgument, {"'wrap_negative'"});
}

TEST(Gather, RejectsBadShapes) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Gather", {{"x", {2, 3}}, IndexInput("i", {3, 1})},
                {{"dim", int64_t{1}}}),
         {"node 'node' (Gather)", "[3, 1]", "dims no larger than x's"});
  expect(OpCase("Gather", {{"x", {2, 3}}, IndexInput("i", {2})},
                {{"dim", int64_t{1}}}),
         {"must have x's rank"});
  expect(
      OpCase("Gather", {{"x", {2, 3}}, {"i", {2, 3}}}, {{"dim", int64_t{1}}}),
      {"input 'index'", "must be int64"});
  expect(OpCase("IndexSelect", {{"x", {2, 3}}, IndexInput("i", {2, 1})},
                {{"dim", int64_t{0}}}),
         {"must be a vector or a scalar"});
  expect(OpCase("IndexSelect", {{"x", {}}, IndexInput("i", {2})},
                {{"dim", int64_t{0}}}),
         {"one index for a scalar"});
  expect(OpCase("IndexSelect", {{"x", {2}}, IndexInput("i", {2})}),
         {"'dim'", "required"});
}

}  // namespace
}  // namespace gradserve::testing
