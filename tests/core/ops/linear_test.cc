#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {
namespace {

TEST(Linear, GradientsWithBias) {
  ExpectGradientsCorrect(
      OpCase("Linear", {{"x", {5, 7}}, {"w", {3, 7}}, {"b", {3}}}));
}

TEST(Linear, GradientsWithoutBias) {
  ExpectGradientsCorrect(
      OpCase("Linear", {{"x", {4, 6}}, {"w", {2, 6}}, {""}}));
}

TEST(Linear, LeadingDimsAreBatch) {
  ExpectGradientsCorrect(
      OpCase("Linear", {{"x", {2, 3, 5}}, {"w", {4, 5}}, {"b", {4}}}));
}

TEST(Linear, BatchOne) {
  ExpectGradientsCorrect(
      OpCase("Linear", {{"x", {1, 9}}, {"w", {1, 9}}, {"b", {1}}}));
}

TEST(Linear, KnownValues) {
  OpCase c("Linear", {{"x", {1, 2}}, {"w", {2, 2}}, {"b", {2}}});
  GraphDef g = SingleOpGraph(c);
  ComputeArgs args;
  args.feeds["x"] = F32({1, 2}, {1, 2});
  args.feeds["w"] = F32({2, 2}, {1, 0, 3, -1});
  args.feeds["b"] = F32({2}, {0.5, -0.5});
  args.output_gradients["out0"] = F32({1, 2}, {1, 1});
  args.wrt = {"x", "w", "b"};
  auto r = Compute(g, args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({1, 2}, {1.5, 0.5}), 0, "y");
  ExpectClose(r->gradients.at("x"), F32({1, 2}, {4, -1}), 0, "dx");
  ExpectClose(r->gradients.at("w"), F32({2, 2}, {1, 2, 1, 2}), 0, "dw");
  ExpectClose(r->gradients.at("b"), F32({2}, {1, 1}), 0, "db");
}

TEST(Linear, EmptyBatch) {
  OpCase c("Linear", {{"x", {0, 3}}, {"w", {2, 3}}, {"b", {2}}});
  auto r = RunCase(c, DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 2}));
  ExpectClose(r->gradients.at("w"), Tensor::Zeros(DType::kFloat32, {2, 3}), 0,
              "dw");
}

// The bias gradient without the weight's (wrt [b] or [x, b]) ran oneDNN's
// backward-weights without x: INTERNAL "could not execute a primitive".
TEST(Linear, BiasGradientWithoutTheWeights) {
  const OpCase c("Linear", {{"x", {5, 7}}, {"w", {3, 7}}, {"b", {3}}});
  for (const std::vector<int>& wrt : {std::vector<int>{2}, {0, 2}}) {
    for (Placements p : {Placements::kAllFeeds, Placements::kMixed}) {
      ExpectGradientsCorrect(Placed(WithWrt(c, wrt), p));
    }
  }
}

// The same when the weight is a buffer: the gradients of all parameters
// are then the bias's alone, db = dY summed over the batch.
TEST(Linear, BiasGradientOfABufferWeight) {
  OpCase c("Linear", {{"x", {2, 2}}, {"w", {2, 2}}, {"b", {2}}});
  c.inputs[1].placement = Placement::kBuffer;
  c.inputs[2].placement = Placement::kParameter;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunPlaced(c,
                       {F32({2, 2}, {1, 2, 3, 4}), F32({2, 2}, {1, 0, 0, 1}),
                        F32({2}, {0, 0})},
                       F32({2, 2}, {1, 2, 3, 4}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->gradients.size(), 1u);
    ExpectClose(r->gradients.at("b"), F32({2}, {4, 6}), 0, "db");
  }
}

TEST(Linear, RejectsMismatchedWeight) {
  ExpectError(OpCase("Linear", {{"x", {4, 6}}, {"w", {2, 5}}, {""}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Linear)", "'weight'", "[2, 5]"});
}

TEST(Linear, RejectsMismatchedBias) {
  ExpectError(OpCase("Linear", {{"x", {4, 6}}, {"w", {2, 6}}, {"b", {3}}}),
              absl::StatusCode::kInvalidArgument, {"'bias'", "[2]", "[3]"});
}

}  // namespace
}  // namespace gradserve::testing
