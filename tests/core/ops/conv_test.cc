// Conv1d and Conv2d.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

struct ConvCase {
  std::string name;
  Shape x, w;
  bool bias;
  AttrMap attrs;
};

std::vector<ConvCase> Conv2dCases() {
  using V = std::vector<int64_t>;
  return {
      {"Basic3x3", {2, 3, 6, 6}, {4, 3, 3, 3}, true, {}},
      {"Stride2", {2, 3, 7, 7}, {4, 3, 3, 3}, true, {{"stride", V{2, 2}}}},
      {"StrideAsInt",
       {1, 2, 7, 6},
       {3, 2, 3, 3},
       true,
       {{"stride", int64_t{2}}}},
      {"Padding1", {2, 3, 5, 5}, {4, 3, 3, 3}, true, {{"padding", V{1, 1}}}},
      {"Dilation2", {1, 2, 9, 9}, {3, 2, 3, 3}, true, {{"dilation", V{2, 2}}}},
      {"Groups2", {2, 4, 6, 6}, {6, 2, 3, 3}, true, {{"groups", int64_t{2}}}},
      {"Depthwise",
       {1, 3, 5, 5},
       {3, 1, 3, 3},
       false,
       {{"groups", int64_t{3}}}},
      {"NoBias", {2, 3, 5, 5}, {2, 3, 3, 3}, false, {}},
      {"BatchOne", {1, 1, 4, 4}, {1, 1, 2, 2}, true, {}},
      {"OddSizes", {2, 3, 5, 7}, {5, 3, 3, 2}, true, {{"padding", V{1, 0}}}},
      {"Asymmetric",
       {1, 2, 8, 7},
       {2, 2, 3, 3},
       true,
       {{"stride", V{2, 1}}, {"padding", V{0, 2}}, {"dilation", V{1, 2}}}},
      {"Pointwise", {2, 8, 3, 3}, {4, 8, 1, 1}, true, {}},
      {"Channels16",
       {2, 16, 6, 6},
       {16, 16, 3, 3},
       true,
       {{"padding", V{1, 1}}}},
      {"KernelCoversInput", {2, 3, 4, 4}, {2, 3, 4, 4}, true, {}},
  };
}

std::vector<ConvCase> Conv1dCases() {
  return {
      {"Basic", {2, 3, 9}, {4, 3, 3}, true, {}},
      {"Stride2Pad1",
       {2, 3, 10},
       {4, 3, 3},
       true,
       {{"stride", int64_t{2}}, {"padding", int64_t{1}}}},
      {"Dilation3", {1, 2, 12}, {2, 2, 3}, false, {{"dilation", int64_t{3}}}},
      {"Groups", {2, 4, 8}, {4, 2, 5}, true, {{"groups", int64_t{2}}}},
      {"BatchOne", {1, 1, 5}, {1, 1, 2}, true, {}},
  };
}

OpCase MakeCase(const std::string& op, const ConvCase& c) {
  std::vector<TestInput> inputs = {{"x", c.x}, {"w", c.w}};
  inputs.push_back(c.bias ? TestInput{"b", {c.w[0]}} : TestInput{""});
  return OpCase(op, inputs, c.attrs);
}

class Conv2d : public ::testing::TestWithParam<ConvCase> {};
TEST_P(Conv2d, Gradients) {
  ExpectGradientsCorrect(MakeCase("Conv2d", GetParam()));
}
INSTANTIATE_TEST_SUITE_P(Shapes, Conv2d, ::testing::ValuesIn(Conv2dCases()),
                         [](const auto& info) { return info.param.name; });

class Conv1d : public ::testing::TestWithParam<ConvCase> {};
TEST_P(Conv1d, Gradients) {
  ExpectGradientsCorrect(MakeCase("Conv1d", GetParam()));
}
INSTANTIATE_TEST_SUITE_P(Shapes, Conv1d, ::testing::ValuesIn(Conv1dCases()),
                         [](const auto& info) { return info.param.name; });

TEST(Conv1d, IsAMatrixWhoseTransposeGivesTheInputGradient) {
  // A valid 1-d convolution of x [5] with w [3] is y = A x for the 3x5
  // banded matrix A (rows: w shifted along), and dL/dx = Aᵀ dL/dy: a full
  // convolution of dY with w.
  const std::vector<float> x = {1, 2, 3, 4, 5}, w = {2, -1, 0.5},
                           dy = {1, -2, 3};
  float a[3][5] = {};
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 3; ++k) a[r][r + k] = w[k];
  }
  std::vector<float> y(3, 0), dx(5, 0), dw(3, 0);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 5; ++c) {
      y[r] += a[r][c] * x[c];
      dx[c] += a[r][c] * dy[r];
    }
    for (int k = 0; k < 3; ++k) dw[k] += dy[r] * x[r + k];
  }
  OpCase c("Conv1d", {{"x", {1, 1, 5}}, {"w", {1, 1, 3}}, {""}});
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunOnValues(c, {F32({1, 1, 5}, x), F32({1, 1, 3}, w)},
                         F32({1, 1, 3}, dy), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({1, 1, 3}, y), 1e-6, "y = Ax");
    ExpectClose(r->gradients.at("x"), F32({1, 1, 5}, dx), 1e-6, "dx = Aᵀdy");
    ExpectClose(r->gradients.at("w"), F32({1, 1, 3}, dw), 1e-6, "dw");
  }
}

TEST(Conv2d, KnownValues) {
  // x 1x1x3x3 = 1..9, w = [[1, 0], [0, -1]], b = 0.5: y[i][j] = x[i][j] -
  // x[i+1][j+1] + 0.5 = -4 + 0.5. Checked against torch.nn.functional.conv2d.
  OpCase c("Conv2d", {{"x", {1, 1, 3, 3}}, {"w", {1, 1, 2, 2}}, {"b", {1}}});
  auto r = RunOnValues(c,
                       {F32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}),
                        F32({1, 1, 2, 2}, {1, 0, 0, -1}), F32({1}, {0.5})},
                       F32({1, 1, 2, 2}, {1, 1, 1, 1}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"),
              F32({1, 1, 2, 2}, {-3.5, -3.5, -3.5, -3.5}), 1e-7, "y");
  ExpectClose(r->gradients.at("x"),
              F32({1, 1, 3, 3}, {1, 1, 0, 1, 0, -1, 0, -1, -1}), 1e-7, "dx");
  ExpectClose(r->gradients.at("w"), F32({1, 1, 2, 2}, {12, 16, 24, 28}), 1e-7,
              "dw");
  ExpectClose(r->gradients.at("b"), F32({1}, {4}), 1e-7, "db");
}

// PyTorch's unbatched x: [C, L] and [C, H, W], as a batch of one without
// its batch dim (every case of the sweeps above, and channels enough for a
// blocked layout).
TEST(Conv, UnbatchedIsABatchOfOne) {
  std::vector<std::pair<std::string, ConvCase>> cases;
  for (const ConvCase& c : Conv1dCases()) cases.push_back({"Conv1d", c});
  for (const ConvCase& c : Conv2dCases()) cases.push_back({"Conv2d", c});
  for (auto& [op, c] : cases) {
    c.x.erase(c.x.begin());
    ExpectUnbatchedIsABatchOfOne(MakeCase(op, c), {0});
  }
}

// PyTorch's padding="same" (y as large as x; an even dilated kernel gets
// its odd zero on the right/bottom) and "valid" (none).
TEST(Conv, PaddingSameAndValid) {
  using V = std::vector<int64_t>;
  const std::vector<std::pair<std::string, ConvCase>> cases = {
      {"Conv2d", {"Same3x3", {2, 3, 5, 6}, {4, 3, 3, 3}, true, {}}},
      {"Conv2d",
       {"SameEven",
        {1, 4, 5, 5},
        {2, 4, 2, 3},
        true,
        {{"dilation", int64_t{3}}}}},
      {"Conv2d", {"SameEven16", {1, 16, 6, 5}, {16, 16, 4, 2}, false, {}}},
      {"Conv1d",
       {"SameGrouped",
        {2, 2, 4},
        {2, 1, 4},
        true,
        {{"groups", int64_t{2}}, {"dilation", int64_t{2}}}}},
      {"Conv1d", {"SameOdd", {1, 3, 7}, {2, 3, 5}, true, {}}},
  };
  for (auto [op, c] : cases) {
    c.attrs["padding"] = std::string("same");
    OpCase same = MakeCase(op, c);
    ExpectGradientsCorrect(same);
    auto r = RunCase(same, DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    Shape y = c.x;
    y[1] = c.w[0];
    EXPECT_EQ(r->outputs.at("out0").shape(), y) << c.name;
    c.x.erase(c.x.begin());
    ExpectUnbatchedIsABatchOfOne(MakeCase(op, c), {0});
  }
  ConvCase valid = {"Valid",
                    {2, 3, 6, 5},
                    {2, 3, 3, 2},
                    true,
                    {{"padding", std::string("valid")}, {"stride", V{2, 1}}}};
  ExpectGradientsCorrect(MakeCase("Conv2d", valid));
  // [1, 1, 1, 4] * [1, 1, 1, 2] = [1, 1, 1, 4]: taps (x_i, x_i+1), the last
  // one on the right padding (torch 1.13: [3, 5, 7, 4]).
  OpCase even("Conv2d", {{"x", {1, 1, 1, 4}}, {"w", {1, 1, 1, 2}}, {""}},
              {{"padding", std::string("same")}});
  auto r = RunOnValues(even, {F32({1, 1, 1, 4}, {1, 2, 3, 4}),
                              F32({1, 1, 1, 2}, {1, 1}), Tensor()});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({1, 1, 1, 4}, {3, 5, 7, 4}), 0,
              "same, even kernel");
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  OpCase strided = even;
  strided.attrs["stride"] = int64_t{2};
  expect(strided, {"node 'node' (Conv2d)", "'padding'", "stride [2, 2]",
                   "\"same\" needs stride 1"});
  OpCase full = even;
  full.attrs["padding"] = std::string("full");
  expect(full, {"'padding'", "ints, \"valid\" or \"same\"", "full"});
  OpCase floats = even;
  floats.attrs["padding"] = 1.5;
  expect(floats, {"'padding' must be ints or string", "float"});
}

// torch.nn.Conv1d/2d's padding_mode: x padded by reflection, replication or
// wrapping around, then convolved unpadded; with int padding or "same".
TEST(Conv, PaddingModes) {
  using V = std::vector<int64_t>;
  for (const std::string mode : {"reflect", "replicate", "circular"}) {
    const std::vector<std::pair<std::string, ConvCase>> cases = {
        {"Conv2d",
         {"Pad1", {2, 3, 5, 4}, {4, 3, 3, 3}, true, {{"padding", V{1, 2}}}}},
        {"Conv2d",
         {"SameEven",
          {1, 2, 4, 5},
          {3, 2, 2, 4},
          false,
          {{"padding", std::string("same")}}}},
        {"Conv2d",
         {"Channels16",
          {1, 16, 4, 4},
          {16, 16, 3, 3},
          true,
          {{"padding", V{1, 1}}, {"stride", V{2, 1}}}}},
        {"Conv1d",
         {"Grouped",
          {2, 4, 6},
          {4, 2, 3},
          true,
          {{"padding", int64_t{2}}, {"groups", int64_t{2}}}}},
    };
    for (auto [op, c] : cases) {
      c.attrs["padding_mode"] = mode;
      ExpectGradientsCorrect(MakeCase(op, c));
      c.x.erase(c.x.begin());
      ExpectUnbatchedIsABatchOfOne(MakeCase(op, c), {0});
    }
  }
  // x = 1..12 as [1, 1, 3, 4], weight [[1, 0, 0], [0, 0, 1]], padding 1,
  // reflect; dL/dy = 1. Values from torch 1.13's nn.Conv2d.
  OpCase c("Conv2d", {{"x", {1, 1, 3, 4}}, {"w", {1, 1, 2, 3}}, {""}},
           {{"padding", V{1, 1}}, {"padding_mode", std::string("reflect")}});
  c.inputs[1].differentiable = false;
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i + 1);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunOnValues(
        c,
        {F32({1, 1, 3, 4}, v), F32({1, 1, 2, 3}, {1, 0, 0, 0, 0, 1}), Tensor()},
        F32({1, 1, 4, 4}, std::vector<float>(16, 1)), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 4, 4}, {8, 8, 10, 10, 8, 8, 10, 10, 16, 16, 18, 18,
                                   16, 16, 18, 18}),
                0, "y");
    ExpectClose(r->gradients.at("x"),
                F32({1, 1, 3, 4}, {1, 3, 3, 1, 2, 6, 6, 2, 1, 3, 3, 1}), 0,
                "dx");
  }
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  OpCase big(
      "Conv1d", {{"x", {1, 1, 3}}, {"w", {1, 1, 3}}, {""}},
      {{"padding", int64_t{3}}, {"padding_mode", std::string("reflect")}});
  expect(big, {"node 'node' (Conv1d)", "padding 3", "\"reflect\"",
               "at least 4, got 3"});
  big.attrs["padding_mode"] = std::string("circular");
  big.attrs["padding"] = int64_t{4};
  expect(big, {"padding 4", "\"circular\"", "at least 4, got 3"});
  big.attrs["padding_mode"] = std::string("mirror");
  expect(big, {"'padding_mode'", "\"reflect\", \"replicate\" or \"circular\"",
               "mirror"});
}

TEST(Conv2d, EmptyBatch) {
  OpCase c("Conv2d", {{"x", {0, 3, 5, 5}}, {"w", {2, 3, 3, 3}}, {"b", {2}}});
  auto r = RunOnValues(
      c,
      {Tensor::Empty(DType::kFloat32, {0, 3, 5, 5}),
       Tensor::Zeros(DType::kFloat32, {2, 3, 3, 3}), F32({2}, {1, 2})},
      Tensor::Empty(DType::kFloat32, {0, 2, 3, 3}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 2, 3, 3}));
  ExpectClose(r->gradients.at("w"),
              Tensor::Zeros(DType::kFloat32, {2, 3, 3, 3}), 0, "dw");
  ExpectClose(r->gradients.at("b"), F32({2}, {0, 0}), 0, "db");
}

// The bias gradient without the weight's (wrt [b] or [x, b]) ran oneDNN's
// backward-weights without x, a null read inside oneDNN.
TEST(Conv, BiasGradientWithoutTheWeights) {
  const ConvCase blocked = {"Channels16", {1, 16, 4, 4}, {16, 16, 3, 3}, true};
  for (const auto& [op, conv] : {std::make_pair("Conv1d", Conv1dCases()[0]),
                                 std::make_pair("Conv2d", Conv2dCases()[0]),
                                 std::make_pair("Conv2d", blocked)}) {
    for (const std::vector<int>& wrt : {std::vector<int>{2}, {0, 2}}) {
      for (Placements p : {Placements::kAllFeeds, Placements::kMixed}) {
        ExpectGradientsCorrect(Placed(WithWrt(MakeCase(op, conv), wrt), p));
      }
    }
  }
}

// The same with the weight a buffer: db = dY summed per channel.
TEST(Conv, BiasGradientOfABufferWeight) {
  OpCase c("Conv2d", {{"x", {1, 1, 3, 3}}, {"w", {2, 1, 2, 2}}, {"b", {2}}});
  c.inputs[1].placement = Placement::kBuffer;
  c.inputs[2].placement = Placement::kParameter;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunPlaced(
        c,
        {F32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}),
         F32({2, 1, 2, 2}, {1, 0, 0, -1, 0, 1, 1, 0}), F32({2}, {0.5, -0.5})},
        F32({1, 2, 2, 2}, {1, 2, 3, 4, -1, 0, 0, 5}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->gradients.size(), 1u);
    ExpectClose(r->gradients.at("b"), F32({2}, {10, 4}), 0, "db");
  }
}

struct BadConv {
  std::string name;
  std::string op;
  Shape x, w;
  AttrMap attrs;
  std::vector<std::string> parts;
  Shape bias = {};
};

class ConvRejects : public ::testing::TestWithParam<BadConv> {};

TEST_P(ConvRejects, WithAClearMessage) {
  const BadConv& b = GetParam();
  std::vector<TestInput> inputs = {{"x", b.x}, {"w", b.w}};
  inputs.push_back(b.bias.empty() ? TestInput{""} : TestInput{"b", b.bias});
  std::vector<std::string> parts = {"node 'node' (" + b.op + ")"};
  parts.insert(parts.end(), b.parts.begin(), b.parts.end());
  ExpectError(OpCase(b.op, inputs, b.attrs), absl::StatusCode::kInvalidArgument,
              parts);
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, ConvRejects,
    ::testing::Values(
        BadConv{"ZeroStride",
                "Conv2d",
                {1, 1, 5, 5},
                {1, 1, 3, 3},
                {{"stride", std::vector<int64_t>{0, 1}}},
                {"'stride'", ">= 1"}},
        BadConv{"NegativeStride",
                "Conv1d",
                {1, 1, 5},
                {1, 1, 3},
                {{"stride", int64_t{-1}}},
                {"'stride'"}},
        BadConv{"ZeroDilation",
                "Conv2d",
                {1, 1, 5, 5},
                {1, 1, 3, 3},
                {{"dilation", int64_t{0}}},
                {"'dilation'", ">= 1"}},
        BadConv{"NegativePadding",
                "Conv2d",
                {1, 1, 5, 5},
                {1, 1, 3, 3},
                {{"padding", std::vector<int64_t>{-1, 0}}},
                {"'padding'", ">= 0"}},
        BadConv{"StrideOfThree",
                "Conv2d",
                {1, 1, 5, 5},
                {1, 1, 3, 3},
                {{"stride", std::vector<int64_t>{1, 1, 1}}},
                {"'stride'", "2 ints"}},
        BadConv{"KernelLargerThanInput",
                "Conv2d",
                {1, 1, 4, 4},
                {1, 1, 5, 5},
                {},
                {"kernel [5, 5]", "larger than the padded input 4"}},
        BadConv{"DilatedKernelTooLarge",
                "Conv1d",
                {1, 1, 6},
                {1, 1, 3},
                {{"dilation", int64_t{3}}},
                {"dilated extent 7", "padded input 6"}},
        BadConv{"ChannelMismatch",
                "Conv2d",
                {1, 3, 5, 5},
                {2, 4, 3, 3},
                {},
                {"input 'weight'", "C/groups = 3", "[2, 4, 3, 3]"}},
        BadConv{"ChannelsNotDivisible",
                "Conv2d",
                {1, 3, 5, 5},
                {2, 1, 3, 3},
                {{"groups", int64_t{2}}},
                {"input 'x'", "3 channels", "groups = 2"}},
        BadConv{"FiltersNotDivisible",
                "Conv2d",
                {1, 4, 5, 5},
                {3, 2, 3, 3},
                {{"groups", int64_t{2}}},
                {"input 'weight'", "groups = 2"}},
        BadConv{"ZeroGroups",
                "Conv2d",
                {1, 4, 5, 5},
                {4, 4, 3, 3},
                {{"groups", int64_t{0}}},
                {"'groups'"}},
        BadConv{"WrongRank",
                "Conv2d",
                {3, 5},
                {2, 3, 3, 3},
                {},
                {"input 'x'", "rank 3 to 4", "[3, 5]"}},
        BadConv{"UnbatchedChannels",
                "Conv2d",
                {1, 3, 5},
                {2, 3, 3, 3},
                {},
                {"input 'weight'", "C/groups = 1", "[2, 3, 3, 3]"}},
        BadConv{"BiasLength",
                "Conv2d",
                {1, 3, 5, 5},
                {2, 3, 3, 3},
                {},
                {"input 'bias'", "[2]", "[3]"},
                {3}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace gradserve::testing
