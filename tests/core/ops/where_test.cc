// Where: int64 and float conditions (nonzero = true), broadcasting, the
// float condition's zero gradient, mismatched inputs.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

TEST(Where, IntAndFloatConditions) {
  const Tensor x = F32({2, 2}, {1, 2, 3, 4});
  const Tensor y = F32({2}, {-1, -2});
  const Tensor seed = F32({2, 2}, {1, 2, 3, 4});
  OpCase w("Where", {IndexInput("c", {2, 1}), {"x", {2, 2}}, {"y", {2}}});
  auto r = RunOnValues(w, {I64({2, 1}, {0, 7}), x, y}, seed);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {-1, -2, 3, 4}), 0, "out");
  ExpectClose(r->gradients.at("x"), F32({2, 2}, {0, 0, 3, 4}), 0, "dx");
  ExpectClose(r->gradients.at("y"), F32({2}, {1, 2}), 0, "dy");
  OpCase f("Where", {{"c", {2, 1}}, {"x", {2, 2}}, {"y", {2}}});
  r = RunOnValues(f, {F32({2, 1}, {0, -0.5}), x, y}, seed);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {-1, -2, 3, 4}), 0, "out");
  ExpectClose(r->gradients.at("c"), F32({2, 1}, {0, 0}), 0, "dc");
}

TEST(Where, RejectsMismatches) {
  ExpectError(
      OpCase("Where", {IndexInput("c", {3}), {"x", {2, 2}}, {"y", {2}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (Where)", "do not broadcast"});
  ExpectError(
      OpCase("Where", {IndexInput("c", {2}), {"x", {2}}, IndexInput("y", {2})}),
      absl::StatusCode::kInvalidArgument,
      {"input 'y'", "must be float32 like input 'x'"});
}

}  // namespace
}  // namespace gradserve::testing
