// Add, Sub, Mul, Div with NumPy broadcasting; alpha, rounding_mode.
#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

struct ShapePair {
  std::string name;
  Shape a, b;
};

const std::vector<ShapePair> kShapes = {
    {"Equal", {3, 4}, {3, 4}},
    {"ScalarSecond", {2, 3}, {}},
    {"ScalarFirst", {}, {2, 3}},
    {"Row", {3, 4}, {1, 4}},
    {"Column", {3, 4}, {3, 1}},
    {"BothBroadcast", {3, 1}, {1, 4}},
    {"RankMismatch", {2, 3, 4}, {4}},
    {"FirstBroadcasts", {4}, {2, 3, 4}},
    {"Middle", {2, 1, 4}, {2, 3, 1}},
    {"BatchOne", {1, 5}, {1, 5}},
    {"Rank4", {2, 1, 3, 2}, {1, 4, 3, 1}},
};

class Binary
    : public ::testing::TestWithParam<std::tuple<std::string, ShapePair>> {};

TEST_P(Binary, Gradients) {
  const auto& [op, shapes] = GetParam();
  // Keep divisors away from zero.
  TestInput b{"b", shapes.b, Init::kUniform, -1, 1};
  if (op == "Div") b = {"b", shapes.b, Init::kAwayFromZero, 0.5, 2};
  ExpectGradientsCorrect(OpCase(op, {{"a", shapes.a}, b}));
}

INSTANTIATE_TEST_SUITE_P(Ops, Binary,
                         ::testing::Combine(::testing::Values("Add", "Sub",
                                                              "Mul", "Div"),
                                            ::testing::ValuesIn(kShapes)),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  std::get<1>(info.param).name;
                         });

TEST(Binary, KnownValuesWithBroadcasting) {
  // a [2, 3] against b [2, 1]; dL/dy = 1. Values from torch 1.13.
  const Tensor a = F32({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor b = F32({2, 1}, {2, 4});
  const Tensor ones = F32({2, 3}, {1, 1, 1, 1, 1, 1});
  struct Expected {
    std::string op;
    std::vector<float> y, da, db;
  };
  for (const Expected& e : std::vector<Expected>{
           {"Add", {3, 4, 5, 8, 9, 10}, {1, 1, 1, 1, 1, 1}, {3, 3}},
           {"Sub", {-1, 0, 1, 0, 1, 2}, {1, 1, 1, 1, 1, 1}, {-3, -3}},
           {"Mul", {2, 4, 6, 16, 20, 24}, {2, 2, 2, 4, 4, 4}, {6, 15}},
           {"Div",
            {0.5, 1, 1.5, 1, 1.25, 1.5},
            {0.5, 0.5, 0.5, 0.25, 0.25, 0.25},
            {-1.5, -0.9375}}}) {
    SCOPED_TRACE(e.op);
    auto r =
        RunOnValues(OpCase(e.op, {{"a", {2, 3}}, {"b", {2, 1}}}), {a, b}, ones);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({2, 3}, e.y), 1e-7, "y");
    ExpectClose(r->gradients.at("a"), F32({2, 3}, e.da), 1e-7, "da");
    ExpectClose(r->gradients.at("b"), F32({2, 1}, e.db), 1e-7, "db");
  }
}

TEST(Binary, OnlyTheNeededGradient) {
  // wrt b only: Mul saves a alone, and da is never computed.
  OpCase c("Mul", {{"a", {3, 2}, Init::kUniform, -1, 1, 0, false}, {"b", {2}}});
  ExpectGradientsCorrect(c);
}

TEST(Binary, EmptyBroadcast) {
  auto r =
      RunOnValues(OpCase("Add", {{"a", {0, 3}}, {"b", {3}}}),
                  {Tensor::Empty(DType::kFloat32, {0, 3}), F32({3}, {1, 2, 3})},
                  Tensor::Empty(DType::kFloat32, {0, 3}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 3}));
  // Nothing flows into b from an empty batch.
  ExpectClose(r->gradients.at("b"), F32({3}, {0, 0, 0}), 0, "db");
}

TEST(Binary, RejectsShapesThatDoNotBroadcast) {
  ExpectError(OpCase("Add", {{"a", {2, 3}}, {"b", {4, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Add)", "input 'a'", "[2, 3]", "input 'b'",
               "[4, 3]", "do not broadcast"});
  ExpectError(OpCase("Div", {{"a", {5}}, {"b", {2, 4}}}),
              absl::StatusCode::kInvalidArgument, {"(Div)", "[5]", "[2, 4]"});
}

// torch.add/sub's alpha: y = a ± alpha·b, dB = ±alpha·ΣdY.
TEST(Binary, AlphaOfAddAndSub) {
  for (const std::string op : {"Add", "Sub"}) {
    for (const ShapePair& shapes : kShapes) {
      ExpectGradientsCorrect(
          OpCase(op, {{"a", shapes.a}, {"b", shapes.b}}, {{"alpha", -3.14}}));
    }
  }
  OpCase sub("Sub", {{"a", {2}}, {"b", {2}}}, {{"alpha", 2.0}});
  auto r =
      RunOnValues(sub, {F32({2}, {1, 2}), F32({2}, {3, 5})}, F32({2}, {1, 10}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2}, {-5, -8}), 0, "y");
  ExpectClose(r->gradients.at("a"), F32({2}, {1, 10}), 0, "da");
  ExpectClose(r->gradients.at("b"), F32({2}, {-2, -20}), 0, "db");
}

// torch.div's rounding modes, values from torch 1.13 (float32): floor
// rounds toward -inf, trunc toward 0, x/0 stays inf; no gradient.
TEST(Binary, DivRoundingModes) {
  const Tensor a = F32({8}, {7, -7, 7, -7, 5.5, -0.5, 0, 1});
  const Tensor b = F32({8}, {2, 2, -2, -2, 0.5, 3, -1, 0});
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<std::string, std::vector<float>>> modes = {
      {"floor", {3, -4, -4, 3, 11, -1, -0.f, inf}},
      {"trunc", {3, -3, -3, 3, 11, -0.f, -0.f, inf}}};
  for (const auto& [mode, want] : modes) {
    OpCase c("Div", {{"a", {8}}, {"b", {8}}},
             {{"rounding_mode", std::string(mode)}});
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      auto r =
          RunOnValues(c, {a, b}, F32({8}, std::vector<float>(8, 1)), dtype);
      ASSERT_TRUE(r.ok()) << r.status();
      const Tensor y = r->outputs.at("out0").CastFloat(DType::kFloat32);
      for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(y.data<float>()[i], want[i]) << mode << " at " << i;
        EXPECT_EQ(std::signbit(y.data<float>()[i]), std::signbit(want[i]))
            << mode << " at " << i;
      }
      ExpectClose(r->gradients.at("a"), Tensor::Zeros(DType::kFloat32, {8}), 0,
                  "da");
      ExpectClose(r->gradients.at("b"), Tensor::Zeros(DType::kFloat32, {8}), 0,
                  "db");
    }
    // Broadcast shapes: zero gradients of each input's own shape.
    ExpectGradientsCorrect(
        OpCase("Div", {{"a", {2, 3}}, {"b", {3}, Init::kAwayFromZero, 0.5, 2}},
               {{"rounding_mode", std::string(mode)}}));
  }
}

TEST(Binary, RejectsAttributes) {
  ExpectError(OpCase("Add", {{"a", {3}}, {"b", {3}}}, {{"axis", int64_t{1}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "unknown attribute 'axis'"});
  ExpectError(OpCase("Mul", {{"a", {3}}, {"b", {3}}}, {{"alpha", 2.0}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "unknown attribute 'alpha'"});
  ExpectError(OpCase("Div", {{"a", {3}}, {"b", {3}}},
                     {{"rounding_mode", std::string("round")}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Div)", "'rounding_mode'", "\"trunc\" or \"floor\"",
               "round"});
}

}  // namespace
}  // namespace gradserve::testing
