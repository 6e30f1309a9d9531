// MaxPool2d and AvgPool2d.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

struct PoolCase {
  std::string name;
  Shape x;
  AttrMap attrs;
};

std::vector<PoolCase> Cases() {
  return {
      {"Kernel2", {2, 3, 6, 6}, {{"kernel", V{2, 2}}}},
      {"Kernel3Stride1",
       {1, 2, 5, 5},
       {{"kernel", V{3, 3}}, {"stride", V{1, 1}}}},
      {"KernelAsInt", {2, 2, 4, 6}, {{"kernel", int64_t{2}}}},
      {"Padding1",
       {2, 3, 5, 5},
       {{"kernel", V{3, 3}}, {"stride", V{2, 2}}, {"padding", V{1, 1}}}},
      {"OddSizes", {1, 3, 7, 5}, {{"kernel", V{2, 3}}, {"stride", V{2, 1}}}},
      {"NonDividing", {2, 2, 7, 7}, {{"kernel", V{3, 3}}, {"stride", V{2, 2}}}},
      {"Global", {2, 4, 3, 5}, {{"kernel", V{3, 5}}}},
      {"BatchOne", {1, 1, 4, 4}, {{"kernel", V{2, 2}}}},
      {"Channels16", {2, 16, 4, 4}, {{"kernel", V{2, 2}}}},
  };
}

class Pool
    : public ::testing::TestWithParam<std::tuple<std::string, PoolCase>> {};

TEST_P(Pool, Gradients) {
  const auto& [op, c] = GetParam();
  ExpectGradientsCorrect(OpCase(op, {{"x", c.x}}, c.attrs));
}

INSTANTIATE_TEST_SUITE_P(Shapes, Pool,
                         ::testing::Combine(::testing::Values("MaxPool2d",
                                                              "AvgPool2d"),
                                            ::testing::ValuesIn(Cases())),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  std::get<1>(info.param).name;
                         });

// PyTorch's unbatched x [C, H, W]: a batch of one without its batch dim.
TEST(Pool, UnbatchedIsABatchOfOne) {
  for (const std::string op : {"MaxPool2d", "AvgPool2d"}) {
    for (PoolCase c : Cases()) {
      c.x.erase(c.x.begin());
      ExpectUnbatchedIsABatchOfOne(OpCase(op, {{"x", c.x}}, c.attrs), {0});
    }
  }
}

// PyTorch's options beyond kernel, stride and padding: dilation, ceil_mode
// and the indices (MaxPool2d); ceil_mode, count_include_pad and
// divisor_override (AvgPool2d). They run on loops in both dtypes.
TEST(Pool, OptionsGradients) {
  const std::vector<std::pair<std::string, AttrMap>> cases = {
      {"MaxPool2d",
       {{"kernel", V{3, 3}}, {"stride", V{2, 2}}, {"dilation", V{1, 2}}}},
      {"MaxPool2d",
       {{"kernel", V{3, 3}},
        {"stride", V{2, 2}},
        {"padding", V{1, 1}},
        {"ceil_mode", int64_t{1}}}},
      {"MaxPool2d",
       {{"kernel", V{2, 3}}, {"ceil_mode", int64_t{1}}, {"dilation", V{2, 1}}}},
      {"AvgPool2d",
       {{"kernel", V{3, 3}},
        {"stride", V{2, 2}},
        {"padding", V{1, 1}},
        {"ceil_mode", int64_t{1}}}},
      {"AvgPool2d",
       {{"kernel", V{3, 3}},
        {"stride", V{2, 2}},
        {"padding", V{1, 1}},
        {"count_include_pad", int64_t{0}}}},
      {"AvgPool2d",
       {{"kernel", V{2, 2}},
        {"ceil_mode", int64_t{1}},
        {"divisor_override", int64_t{3}}}},
      {"AvgPool2d", {{"kernel", V{2, 2}}, {"divisor_override", int64_t{-2}}}},
      // ONNX's asymmetric pads: each dim's before, then after.
      {"MaxPool2d",
       {{"kernel", V{3, 3}}, {"stride", V{2, 2}}, {"padding", V{0, 1, 1, 0}}}},
      {"MaxPool2d",
       {{"kernel", V{2, 3}},
        {"padding", V{1, 0, 0, 1}},
        {"ceil_mode", int64_t{1}}}},
      {"AvgPool2d",
       {{"kernel", V{3, 3}}, {"stride", V{2, 1}}, {"padding", V{1, 0, 0, 1}}}},
      {"AvgPool2d",
       {{"kernel", V{3, 3}},
        {"stride", V{2, 2}},
        {"padding", V{0, 1, 1, 1}},
        {"count_include_pad", int64_t{0}},
        {"ceil_mode", int64_t{1}}}},
  };
  for (const auto& [op, attrs] : cases) {
    for (Shape x : {Shape{2, 3, 7, 6}, Shape{1, 16, 5, 5}}) {
      ExpectGradientsCorrect(OpCase(op, {{"x", x}}, attrs));
    }
    OpCase unbatched(op, {{"x", {3, 7, 6}}}, attrs);
    ExpectUnbatchedIsABatchOfOne(unbatched, {0});
  }
  // The indices as a second output, next to y's gradient.
  OpCase indices("MaxPool2d", {{"x", {2, 2, 5, 5}}},
                 {{"kernel", V{3, 3}},
                  {"stride", V{2, 2}},
                  {"padding", V{1, 1}},
                  {"ceil_mode", int64_t{1}}});
  indices.num_outputs = 2;
  indices.seeded_outputs = {0};
  ExpectGradientsCorrect(indices);
}

// Padding [1, 0, 0, 1]: a row above x, a column right of it. x = 1..20 as
// [1, 1, 4, 5]: windows rows {-1, 0} and {1, 2}, columns {0, 1}, {2, 3},
// {4, 5}. flat_indices: within all of x; here x has one plane, so the
// second case is two batches of it.
TEST(Pool, AsymmetricPaddingAndFlatIndices) {
  std::vector<float> v(40);
  for (int i = 0; i < 40; ++i) v[i] = static_cast<float>(i % 20 + 1);
  for (int64_t batch : {1, 2}) {
    OpCase max("MaxPool2d", {{"x", {batch, 1, 4, 5}}},
               {{"kernel", V{2, 2}},
                {"padding", V{1, 0, 0, 1}},
                {"flat_indices", int64_t{1}}});
    max.num_outputs = 2;
    const Tensor x = F32({batch, 1, 4, 5}, {v.begin(), v.begin() + 20 * batch});
    auto r = RunOnValues(
        max, {x}, F32({batch, 1, 2, 3}, std::vector<float>(6 * batch, 1.f)),
        DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<float> y;
    std::vector<int64_t> indices;
    for (int64_t n = 0; n < batch; ++n) {
      y.insert(y.end(), {2, 4, 5, 12, 14, 15});
      for (int64_t i : {1, 3, 4, 11, 13, 14}) indices.push_back(i + 20 * n);
    }
    ExpectClose(r->outputs.at("out0"), F32({batch, 1, 2, 3}, y), 0, "y");
    const Tensor& i = r->outputs.at("out1");
    EXPECT_EQ(std::vector<int64_t>(i.data<int64_t>(),
                                   i.data<int64_t>() + i.num_elements()),
              indices);
  }
}

// x = 1..20 as [1, 1, 4, 5]; values from torch 1.13's max_pool2d and
// avg_pool2d (dL/dy = 1, 2, ...).
TEST(Pool, OptionsKnownValues) {
  std::vector<float> v(20);
  for (int i = 0; i < 20; ++i) v[i] = static_cast<float>(i + 1);
  const Tensor x = F32({1, 1, 4, 5}, v);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    OpCase max("MaxPool2d", {{"x", {1, 1, 4, 5}}},
               {{"kernel", V{3, 3}},
                {"stride", V{2, 2}},
                {"padding", V{1, 1}},
                {"dilation", V{1, 2}},
                {"ceil_mode", int64_t{1}}});
    max.num_outputs = 2;
    auto r =
        RunOnValues(max, {x}, F32({1, 1, 3, 2}, {1, 2, 3, 4, 5, 6}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 3, 2}, {9, 9, 19, 19, 19, 19}), 0, "max y");
    const Tensor& i = r->outputs.at("out1");
    ASSERT_EQ(i.dtype(), DType::kInt64);
    EXPECT_EQ(std::vector<int64_t>(i.data<int64_t>(), i.data<int64_t>() + 6),
              (std::vector<int64_t>{8, 8, 18, 18, 18, 18}));
    std::vector<float> dx(20, 0.f);
    dx[8] = 3;
    dx[18] = 18;
    ExpectClose(r->gradients.at("x"), F32({1, 1, 4, 5}, dx), 0, "max dx");

    OpCase avg("AvgPool2d", {{"x", {1, 1, 4, 5}}},
               {{"kernel", V{3, 3}},
                {"stride", V{2, 2}},
                {"padding", V{1, 1}},
                {"ceil_mode", int64_t{1}},
                {"count_include_pad", int64_t{0}}});
    std::vector<float> seed(9);
    for (int k = 0; k < 9; ++k) seed[k] = static_cast<float>(k + 1);
    r = RunOnValues(avg, {x}, F32({1, 1, 3, 3}, seed), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 3, 3}, {4, 5.5, 7, 11.5, 13, 14.5, 16.5, 18, 19.5}),
                1e-6, "avg y, padding not counted");
    ExpectClose(r->gradients.at("x"),
                F32({1, 1, 4, 5},
                    {0.25f,      0.5833333f, 0.3333333f, 1.0833333f, 0.75f,
                     0.9166667f, 1.8055556f, 0.8888889f, 2.6388889f, 1.75f,
                     0.6666667f, 1.2222222f, 0.5555556f, 1.5555556f, 1.0f,
                     4.1666667f, 7.3888889f, 3.2222222f, 8.7222222f, 5.5f}),
                1e-6, "avg dx");
    avg.attrs["count_include_pad"] = int64_t{1};
    r = RunOnValues(avg, {x}, Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 3, 3}, {1.7777778f, 3.6666667f, 3.1111111f,
                                   7.6666667f, 13, 9.6666667f, 5.5, 9, 6.5}),
                1e-6, "avg y, padding counted");
    OpCase divided("AvgPool2d", {{"x", {1, 1, 4, 5}}},
                   {{"kernel", V{2, 2}},
                    {"ceil_mode", int64_t{1}},
                    {"divisor_override", int64_t{3}}});
    r = RunOnValues(divided, {x}, Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 2, 3},
                    {5.3333333f, 8, 5, 18.666667f, 21.333333f, 11.666667f}),
                1e-6, "avg y, divisor_override");
  }
}

TEST(Pool, KnownValues) {
  // x = 1..16 as 4x4; 2x2 windows. Values from torch.nn.functional.
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[i] = static_cast<float>(i + 1);
  const Tensor seed = F32({1, 1, 2, 2}, {1, 2, 3, 4});
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto max = RunOnValues(
        OpCase("MaxPool2d", {{"x", {1, 1, 4, 4}}}, {{"kernel", V{2, 2}}}),
        {F32({1, 1, 4, 4}, x)}, seed, dtype);
    ASSERT_TRUE(max.ok()) << max.status();
    ExpectClose(max->outputs.at("out0"), F32({1, 1, 2, 2}, {6, 8, 14, 16}), 0,
                "max");
    ExpectClose(
        max->gradients.at("x"),
        F32({1, 1, 4, 4}, {0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4}), 0,
        "dmax");
    auto avg = RunOnValues(
        OpCase(
            "AvgPool2d", {{"x", {1, 1, 4, 4}}},
            {{"kernel", V{2, 2}}, {"padding", V{1, 1}}, {"stride", V{2, 2}}}),
        {F32({1, 1, 4, 4}, x)}, F32({1, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 1, 1, 1}),
        dtype);
    ASSERT_TRUE(avg.ok()) << avg.status();
    // Padding counts: the corner window holds x[0][0] = 1 and three zeros.
    ExpectClose(avg->outputs.at("out0"),
                F32({1, 1, 3, 3}, {0.25, 1.25, 1, 3.5, 8.5, 5, 3.25, 7.25, 4}),
                1e-7, "avg");
    ExpectClose(avg->gradients.at("x"),
                F32({1, 1, 4, 4}, std::vector<float>(16, 0.25)), 1e-7, "davg");
  }
}

TEST(Pool, EmptyBatch) {
  auto r = RunOnValues(
      OpCase("MaxPool2d", {{"x", {0, 2, 4, 4}}}, {{"kernel", V{2, 2}}}),
      {Tensor::Empty(DType::kFloat32, {0, 2, 4, 4})},
      Tensor::Empty(DType::kFloat32, {0, 2, 2, 2}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs.at("out0").shape(), (Shape{0, 2, 2, 2}));
}

TEST(Pool, RejectsBadInput) {
  auto expect = [](const std::string& op, Shape x, AttrMap attrs,
                   std::vector<std::string> parts) {
    parts.insert(parts.begin(), "node 'node' (" + op + ")");
    ExpectError(OpCase(op, {{"x", x}}, attrs),
                absl::StatusCode::kInvalidArgument, parts);
  };
  expect("MaxPool2d", {1, 1, 4, 4}, {{"kernel", V{0, 2}}},
         {"'kernel'", ">= 1"});
  expect("AvgPool2d", {1, 1, 4, 4}, {{"kernel", int64_t{0}}}, {"'kernel'"});
  expect("MaxPool2d", {1, 1, 4, 4}, {}, {"'kernel'", "required"});
  expect("MaxPool2d", {1, 1, 4, 4}, {{"kernel", V{2, 2}}, {"stride", V{0, 1}}},
         {"'stride'", ">= 1"});
  expect("AvgPool2d", {1, 1, 4, 4}, {{"kernel", V{2, 2}}, {"padding", V{2, 0}}},
         {"'padding'", "half the kernel"});
  expect("MaxPool2d", {1, 1, 4, 4},
         {{"kernel", V{2, 2}}, {"padding", V{-1, 0}}}, {"'padding'"});
  expect("MaxPool2d", {1, 1, 3, 3}, {{"kernel", V{4, 2}}},
         {"kernel [4, 2]", "larger than the padded input 3"});
  expect("AvgPool2d", {4, 4}, {{"kernel", V{2, 2}}},
         {"input 'x'", "rank 3 to 4", "[4, 4]"});
  expect("MaxPool2d", {1, 4, 4, 4, 4}, {{"kernel", V{2, 2}}},
         {"input 'x'", "rank 3 to 4"});
  expect("MaxPool2d", {1, 1, 4, 4}, {{"kernel", V{2, 2, 2}}},
         {"'kernel'", "2 ints"});
  expect("MaxPool2d", {1, 1, 4, 4},
         {{"kernel", V{2, 2}}, {"dilation", V{0, 1}}}, {"'dilation'", ">= 1"});
  expect("MaxPool2d", {1, 1, 4, 4},
         {{"kernel", V{2, 2}}, {"dilation", V{4, 1}}},
         {"kernel [2, 2]", "dilated extent 5", "larger than the padded input"});
  expect("AvgPool2d", {1, 1, 4, 4},
         {{"kernel", V{2, 2}}, {"divisor_override", int64_t{1} << 40}},
         {"'divisor_override'", "0 (none) or in [-2147483647, 2147483647]"});
  expect("AvgPool2d", {1, 1, 4, 4},
         {{"kernel", V{2, 2}}, {"dilation", V{2, 2}}},
         {"unknown attribute 'dilation'"});
}

}  // namespace
}  // namespace gradserve::testing
