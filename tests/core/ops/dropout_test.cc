// Dropout: keep rate, scaling, reproducibility by seed, explicit masks, EVAL.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase DropoutCase(Shape x, double p, uint64_t seed, int outputs = 2) {
  OpCase c("Dropout", {{"x", x, Init::kUniform, 0.5, 1.5}}, {{"p", p}});
  c.seed = seed;
  c.num_outputs = outputs;
  c.seeded_outputs = {0};
  return c;
}

Tensor Ones(Shape shape) {
  Tensor t = Tensor::Empty(DType::kFloat32, shape);
  std::fill_n(t.data<float>(), t.num_elements(), 1.f);
  return t;
}

TEST(Dropout, KeepRateAndScaling) {
  const int64_t n = 200000;
  for (double p : {0.1, 0.5, 0.8}) {
    auto r = RunOnValues(DropoutCase({n}, p, 11), {Ones({n})});
    ASSERT_TRUE(r.ok()) << r.status();
    const Tensor& y = r->outputs.at("out0");
    const Tensor& mask = r->outputs.at("out1");
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float m = mask.data<float>()[i];
      ASSERT_TRUE(m == 0 || m == 1) << m;
      kept += m == 1;
      // y = x·mask/(1 - p): kept elements are scaled, dropped ones are 0.
      ASSERT_FLOAT_EQ(y.data<float>()[i], m / static_cast<float>(1 - p));
    }
    // Binomial(n, 1 - p): within 5 standard deviations.
    const double expected = n * (1 - p), sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(kept), expected, 5 * sd) << "p = " << p;
  }
}

TEST(Dropout, SameSeedSameMaskOtherSeedOtherMask) {
  auto mask = [](uint64_t seed) {
    auto r = RunOnValues(DropoutCase({1000}, 0.5, seed), {Ones({1000})});
    EXPECT_TRUE(r.ok()) << r.status();
    return r->outputs.at("out1").Clone();
  };
  const Tensor a = mask(3), b = mask(3), c = mask(4);
  EXPECT_EQ(a.values<float>(), b.values<float>());
  EXPECT_NE(a.values<float>(), c.values<float>());
}

TEST(Dropout, ZeroProbabilityKeepsEverything) {
  auto r = RunOnValues(DropoutCase({64}, 0.0, 1), {Ones({64})});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), Ones({64}), 0, "y");
}

TEST(Dropout, GradientIsScaledByTheSameMask) {
  // Finite differences with the mask fixed by the seed.
  ExpectGradientsCorrect(DropoutCase({4, 5}, 0.3, 9));
  ExpectGradientsCorrect(DropoutCase({2, 3, 4}, 0.6, 2, 1));
  // dx = dy·mask/(1 - p), exactly.
  auto r = RunOnValues(DropoutCase({100}, 0.25, 5), {Ones({100})}, Ones({100}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->gradients.at("x"), r->outputs.at("out0"), 0,
              "dx = y for x = 1");
}

TEST(Dropout, ExplicitMaskOverridesTheDraw) {
  OpCase c("Dropout", {{"x", {4}}, {"m", {4}, Init::kBernoulli}}, {{"p", 0.5}});
  c.num_outputs = 2;
  c.seeded_outputs = {0};
  auto r = RunOnValues(c, {F32({4}, {1, 2, 3, 4}), F32({4}, {1, 0, 0, 1})},
                       F32({4}, {1, 1, 1, 1}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({4}, {2, 0, 0, 8}), 0, "y");
  ExpectClose(r->outputs.at("out1"), F32({4}, {1, 0, 0, 1}), 0, "mask");
  ExpectClose(r->gradients.at("x"), F32({4}, {2, 0, 0, 2}), 0, "dx");
  ExpectClose(r->gradients.at("m"), F32({4}, {2, 4, 6, 8}), 0, "dmask");
  ExpectGradientsCorrect(c);
}

// A given mask in wrt on a node without the mask output: Backward read the
// gradient of a second output the node does not have (heap overflow).
// dL/dmask = dL/dy·x/(1 - p), the mask being a factor of y = x·mask/(1 - p).
TEST(Dropout, GradientOfAGivenMaskWithoutTheMaskOutput) {
  OpCase c("Dropout", {{"x", {4}}, {"m", {4}, Init::kBernoulli}}, {{"p", 0.5}});
  for (const std::vector<int>& wrt : {std::vector<int>{1}, {0, 1}}) {
    for (Placements p : {Placements::kAllFeeds, Placements::kMixed}) {
      ExpectGradientsCorrect(Placed(WithWrt(c, wrt), p));
    }
  }
  auto r = RunOnValues(c, {F32({4}, {1, 2, 3, 4}), F32({4}, {1, 0, 0, 1})},
                       F32({4}, {1, -1, 2, 0.5}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->gradients.at("m"), F32({4}, {2, -4, 12, 4}), 0, "dmask");
}

// Named, the mask output is the given mask: its gradient adds to dL/dmask.
TEST(Dropout, GradientOfAGivenMaskThroughBothOutputs) {
  OpCase c("Dropout", {{"x", {4}}, {"m", {4}}}, {{"p", 0.5}});
  c.num_outputs = 2;
  ComputeArgs args;
  args.feeds = {{"x", F32({4}, {1, 2, 3, 4})}, {"m", F32({4}, {1, 0, 0, 1})}};
  args.output_gradients = {{"out0", F32({4}, {1, 1, 1, 1})},
                           {"out1", F32({4}, {10, 20, 30, 40})}};
  args.wrt = {"m"};
  auto r = Compute(SingleOpGraph(c), args, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->gradients.at("m"), F32({4}, {12, 24, 36, 48}), 0, "dmask");
}

TEST(Dropout, EvalIsTheIdentity) {
  OpCase c = DropoutCase({3, 4}, 0.5, 1);
  c.mode = Mode::kEval;
  ExpectGradientsCorrect(c);
  auto r =
      RunOnValues(c, {F32({2, 2}, {1, 2, 3, 4})}, F32({2, 2}, {5, 6, 7, 8}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2, 2}, {1, 2, 3, 4}), 0, "y");
  ExpectClose(r->outputs.at("out1"), Ones({2, 2}), 0, "mask");
  ExpectClose(r->gradients.at("x"), F32({2, 2}, {5, 6, 7, 8}), 0, "dx");
}

// p = 1 drops everything, as torch.nn.functional.dropout(x, 1.0) does:
// y = 0 and dx = 0 (not 0·inf = NaN), with and without a given mask.
TEST(Dropout, OneDropsEverything) {
  auto r = RunOnValues(DropoutCase({3}, 1.0, 5), {F32({3}, {1, -2, 3})},
                       F32({3}, {4, 5, 6}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({3}, {0, 0, 0}), 0, "y");
  ExpectClose(r->outputs.at("out1"), F32({3}, {0, 0, 0}), 0, "mask");
  ExpectClose(r->gradients.at("x"), F32({3}, {0, 0, 0}), 0, "dx");
  OpCase given("Dropout", {{"x", {2, 3}}, {"m", {2, 3}, Init::kBernoulli}},
               {{"p", 1.0}});
  ExpectGradientsCorrect(given);
  auto g = RunOnValues(given, {F32({1}, {2}), F32({1}, {1})}, F32({1}, {3}));
  ASSERT_TRUE(g.ok()) << g.status();
  ExpectClose(g->outputs.at("out0"), F32({1}, {0}), 0, "y, given mask");
  ExpectClose(g->gradients.at("x"), F32({1}, {0}), 0, "dx, given mask");
  ExpectClose(g->gradients.at("m"), F32({1}, {0}), 0, "dmask");
}

TEST(Dropout, RejectsBadInput) {
  for (double p : {-0.1, 1.5}) {
    ExpectError(DropoutCase({4}, p, 1), absl::StatusCode::kInvalidArgument,
                {"node 'node' (Dropout)", "'p'", "in [0, 1]"});
  }
  ExpectError(DropoutCase({4}, std::nan(""), 1),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Dropout)", "'p'", "finite"});
  OpCase c("Dropout", {{"x", {4}}, {"m", {5}}});
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"input 'mask'", "[4]", "[5]"});
}

}  // namespace
}  // namespace gradserve::testing
