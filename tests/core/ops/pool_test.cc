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
}

}  // namespace
}  // namespace gradserve::testing
