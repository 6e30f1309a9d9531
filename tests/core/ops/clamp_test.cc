// Hardtanh, ReLU6, Softplus and Clamp: torch's values and gradients at the
// bounds (Hardtanh 0 there, Clamp dY), tensor bounds, bad attributes.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

const Tensor kX = F32({5}, {-2, -1, 0, 1, 2});
const Tensor kOnes = F32({5}, {1, 1, 1, 1, 1});

// Values from torch 1.13: F.hardtanh(x, -1, 1) and torch.clamp(x, -1, 1)
// agree forward; at x = ±1 hardtanh's gradient is 0, clamp's 1.
TEST(Clamp, GradientsAtTheBoundsAreTorchs) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto h = RunOnValues(OpCase("Hardtanh", {{"x", {5}}}), {kX}, kOnes, dtype);
    ASSERT_TRUE(h.ok()) << h.status();
    ExpectClose(h->outputs.at("out0"), F32({5}, {-1, -1, 0, 1, 1}), 0, "y");
    ExpectClose(h->gradients.at("x"), F32({5}, {0, 0, 1, 0, 0}), 0, "hardtanh");
    auto c = RunOnValues(
        OpCase("Clamp", {{"x", {5}}}, {{"min", -1.0}, {"max", 1.0}}), {kX},
        kOnes, dtype);
    ASSERT_TRUE(c.ok()) << c.status();
    ExpectClose(c->outputs.at("out0"), F32({5}, {-1, -1, 0, 1, 1}), 0, "y");
    ExpectClose(c->gradients.at("x"), F32({5}, {0, 1, 1, 1, 0}), 0, "clamp");
  }
}

// min > max: y = max everywhere; no gradient to x; with tensor bounds all
// of it goes to max.
TEST(Clamp, MinAboveMaxGivesMax) {
  auto h = RunOnValues(
      OpCase("Hardtanh", {{"x", {5}}}, {{"min_val", 1.0}, {"max_val", -1.0}}),
      {kX}, kOnes);
  ASSERT_TRUE(h.ok()) << h.status();
  ExpectClose(h->outputs.at("out0"), F32({5}, {-1, -1, -1, -1, -1}), 0, "y");
  ExpectClose(h->gradients.at("x"), F32({5}, {0, 0, 0, 0, 0}), 0, "dx");
  OpCase t("Clamp", {{"x", {5}}, {"lo", {}}, {"hi", {}}});
  auto c = RunOnValues(t, {kX, F32({}, {1}), F32({}, {-1})}, kOnes);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectClose(c->outputs.at("out0"), F32({5}, {-1, -1, -1, -1, -1}), 0, "y");
  ExpectClose(c->gradients.at("x"), F32({5}, {0, 0, 0, 0, 0}), 0, "dx");
  ExpectClose(c->gradients.at("lo"), F32({}, {0}), 0, "dmin");
  ExpectClose(c->gradients.at("hi"), F32({}, {5}), 0, "dmax");
}

// torch.clamp(x, lo, hi) with lo = [-1.5, 0.5] against x [2, 1]... values
// from torch 1.13; x = lo exactly gives dL/dx, not dL/dlo.
TEST(Clamp, TensorBoundsBroadcast) {
  OpCase t("Clamp", {{"x", {2, 1}}, {"lo", {2}}, {"hi", {}}});
  auto r = RunOnValues(
      t, {F32({2, 1}, {-2, 0.5}), F32({2}, {-1.5, 0.5}), F32({}, {1})},
      F32({2, 2}, {1, 2, 3, 4}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {-1.5, 0.5, 0.5, 0.5}), 0,
              "y");
  ExpectClose(r->gradients.at("x"), F32({2, 1}, {0, 7}), 0, "dx");
  ExpectClose(r->gradients.at("lo"), F32({2}, {1, 2}), 0, "dmin");
  ExpectClose(r->gradients.at("hi"), F32({}, {0}), 0, "dmax");
}

TEST(Clamp, SoftplusFollowsTheThreshold) {
  OpCase c("Softplus", {{"x", {3}}}, {{"beta", 2.0}, {"threshold", 1.0}});
  auto r = RunOnValues(c, {F32({3}, {-1, 0.25, 0.75})}, F32({3}, {1, 1, 1}),
                       DType::kFloat64);
  ASSERT_TRUE(r.ok()) << r.status();
  // log1p(exp(2x))/2 below x = 0.5, x above; torch 1.13's values.
  ExpectClose(r->outputs.at("out0"), F32({3}, {0.0634640, 0.4870385, 0.75}),
              1e-6, "y");
  ExpectClose(r->gradients.at("x"), F32({3}, {0.1192029, 0.6224593, 1}), 1e-6,
              "dx");
}

TEST(Clamp, RejectsBadBounds) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Clamp", {{"x", {2}}, {"lo", {2}}}, {{"min", 0.5}}),
         {"node 'node' (Clamp)", "attribute 'min' and input 'min'", "both"});
  expect(OpCase("Clamp", {{"x", {2}}}, {{"max", std::vector<double>{1, 2}}}),
         {"attribute 'max'", "one float"});
  expect(OpCase("Clamp", {{"x", {2, 3}}, {"lo", {4}}}),
         {"do not broadcast", "[2, 3]", "[4]"});
  expect(OpCase("Hardtanh", {{"x", {2}}}, {{"max_val", "x"}}),
         {"attribute 'max_val' must be float"});
}

}  // namespace
}  // namespace gradserve::testing
