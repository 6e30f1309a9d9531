// Shapes and attributes at the edges of int64 (an adversarial probe's
// findings): every such request is refused with the right code and a message
// naming the culprit, through Compute and through Describe alike (both run
// the op factories' shape rules), and the sizes that fit still compute.
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compute.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t k2To31 = int64_t{1} << 31;
constexpr int64_t k2To62 = int64_t{1} << 62;
using Ints = std::vector<int64_t>;

// One node "n1" of `op` reading graph inputs named after `inputs`' keys.
struct EdgeCase {
  std::string name;
  std::string op;
  std::vector<std::pair<std::string, Shape>> inputs;
  AttrMap attrs;
  absl::StatusCode code;
  std::vector<std::string> parts;
  int64_t max_tensor_elements = Limits{}.max_tensor_elements;
};

void PrintTo(const EdgeCase& c, std::ostream* os) { *os << c.name; }

GraphDef OneNodeGraph(const EdgeCase& c) {
  GraphDef g;
  NodeDef n{"n1", c.op, {}, {"y"}, c.attrs};
  for (const auto& [name, shape] : c.inputs) {
    n.inputs.push_back(name);
    g.inputs.push_back(name);
  }
  g.nodes = {n};
  g.outputs = {"y"};
  return g;
}

Limits LimitsOf(const EdgeCase& c) {
  Limits limits;
  limits.max_tensor_elements = c.max_tensor_elements;
  return limits;
}

absl::Status ComputeStatus(const EdgeCase& c) {
  ComputeArgs args;
  for (const auto& [name, shape] : c.inputs) {
    // Zeros (a shape of no elements allocates nothing).
    args.feeds[name] = Tensor::Zeros(DType::kFloat32, shape);
  }
  return Compute(OneNodeGraph(c), args, LimitsOf(c)).status();
}

absl::Status DescribeStatus(const EdgeCase& c) {
  absl::flat_hash_map<std::string, TensorMeta> metas;
  for (const auto& [name, shape] : c.inputs) {
    metas[name] = TensorMeta{DType::kFloat32, shape};
  }
  return Describe(OneNodeGraph(c), metas, LimitsOf(c)).status();
}

class Refused : public ::testing::TestWithParam<EdgeCase> {};

TEST_P(Refused, ByCompute) {
  ExpectStatus(ComputeStatus(GetParam()), GetParam().code, GetParam().parts);
}

TEST_P(Refused, ByDescribe) {
  ExpectStatus(DescribeStatus(GetParam()), GetParam().code, GetParam().parts);
}

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
constexpr auto kExhausted = absl::StatusCode::kResourceExhausted;
const Shape kImage = {1, 1, 4, 4};

INSTANTIATE_TEST_SUITE_P(
    Probe, Refused,
    ::testing::Values(
        // Item 7: attribute ranges, and extents derived from them.
        EdgeCase{"ConvPaddingInt64Max",
                 "Conv2d",
                 {{"x", kImage}, {"w", {1, 1, 3, 3}}},
                 {{"padding", Ints{kInt64Max, 0}}},
                 kInvalid,
                 {"node 'n1' (Conv2d)", "attribute 'padding'", "<= 2147483647",
                  "9223372036854775807"}},
        EdgeCase{"ConvStride2To31",
                 "Conv2d",
                 {{"x", kImage}, {"w", {1, 1, 3, 3}}},
                 {{"stride", Ints{k2To31, 1}}},
                 kInvalid,
                 {"node 'n1' (Conv2d)", "attribute 'stride'", ">= 1",
                  "<= 2147483647", "2147483648"}},
        EdgeCase{"ConvDilationInt64Max",
                 "Conv1d",
                 {{"x", {1, 1, 9}}, {"w", {1, 1, 3}}},
                 {{"dilation", kInt64Max}},
                 kInvalid,
                 {"node 'n1' (Conv1d)", "attribute 'dilation'",
                  "9223372036854775807"}},
        EdgeCase{"ConvDilatedKernelBeyondInt",
                 "Conv1d",
                 {{"x", {1, 1, 9}}, {"w", {1, 1, 3}}},
                 {{"dilation", k2To31 - 1}},
                 kInvalid,
                 {"node 'n1' (Conv1d)", "attribute 'dilation'",
                  "dilated kernel extent", "4294967295", "at most 2147483647"}},
        EdgeCase{"ConvPaddedInputBeyondInt",
                 "Conv2d",
                 {{"x", kImage}, {"w", {1, 1, 3, 3}}},
                 {{"padding", Ints{0, int64_t{1} << 30}}},
                 kInvalid,
                 {"node 'n1' (Conv2d)", "attribute 'padding'",
                  "padded input extent", "spatial dim 1", "2147483652"}},
        EdgeCase{"ConvStridePlusPaddingBeyondInt",
                 "Conv2d",
                 {{"x", kImage}, {"w", {1, 1, 3, 3}}},
                 {{"stride", Ints{k2To31 - 1, 1}}, {"padding", Ints{1, 0}}},
                 kInvalid,
                 {"node 'n1' (Conv2d)", "attribute 'stride'",
                  "stride plus padding", "2147483648"}},
        EdgeCase{"MaxPoolPaddingInt64Max",
                 "MaxPool2d",
                 {{"x", kImage}},
                 {{"kernel", Ints{2, 2}}, {"padding", Ints{kInt64Max, 0}}},
                 kInvalid,
                 {"node 'n1' (MaxPool2d)", "attribute 'padding'",
                  "9223372036854775807"}},
        EdgeCase{"AvgPoolKernel2To31",
                 "AvgPool2d",
                 {{"x", kImage}},
                 {{"kernel", Ints{k2To31, 1}}},
                 kInvalid,
                 {"node 'n1' (AvgPool2d)", "attribute 'kernel'", "2147483648"}},
        EdgeCase{"MaxPoolStride2To31",
                 "MaxPool2d",
                 {{"x", kImage}},
                 {{"kernel", Ints{2, 2}}, {"stride", Ints{1, k2To31}}},
                 kInvalid,
                 {"node 'n1' (MaxPool2d)", "attribute 'stride'", "2147483648"}},
        // Item 8: a negative dim after a zero dim.
        EdgeCase{"NegativeDimAfterZero",
                 "ReLU",
                 {{"x", {0, -5}}},
                 {},
                 kInvalid,
                 {"value 'x'", ">= 0", "[0, -5]"}},
        // Item 9: the other dims of empty tensors stay bounded.
        EdgeCase{"FlattenOfEmptyWithHugeDims",
                 "Flatten",
                 {{"x", {0, 3, k2To62}}},
                 {},
                 kExhausted,
                 {"value 'x'", "[0, 3, 4611686018427387904]", "non-zero dims"}},
        EdgeCase{"ConcatOfEmptyWithHugeDims",
                 "Concat",
                 {{"a", {0, k2To62}}, {"b", {0, k2To62}}},
                 {},
                 kExhausted,
                 {"value 'a'", "[0, 4611686018427387904]"}},
        EdgeCase{"ReshapeToEmptyWithHugeDims",
                 "Reshape",
                 {{"x", {0, 4}}},
                 {{"shape", Ints{int64_t{1} << 40, 0}}},
                 kExhausted,
                 {"node 'n1' output 'y'", "[1099511627776, 0]"}},
        // With the limit raised to int64's, a Concat's dim can still
        // overflow: 128 · 2^56 = 2^63.
        EdgeCase{"ConcatDimOverflowsInt64",
                 "Concat",
                 [] {
                   std::vector<std::pair<std::string, Shape>> inputs;
                   for (int i = 0; i < 128; ++i) {
                     inputs.push_back(
                         {absl::StrCat("x", i), {0, kMaxTensorElements}});
                   }
                   return inputs;
                 }(),
                 {},
                 kExhausted,
                 {"node 'n1' (Concat)", "along axis 1", "more than int64 holds",
                  "input 'x128'"},
                 kInt64Max}),
    [](const ::testing::TestParamInfo<EdgeCase>& info) {
      return info.param.name;
    });

absl::StatusOr<Shape> DescribedShape(const EdgeCase& c) {
  absl::flat_hash_map<std::string, TensorMeta> metas;
  for (const auto& [name, shape] : c.inputs) {
    metas[name] = TensorMeta{DType::kFloat32, shape};
  }
  auto summary = Describe(OneNodeGraph(c), metas, LimitsOf(c));
  if (!summary.ok()) return summary.status();
  return summary->nodes[0].outputs[0].shape;
}

TEST(EdgeShapes, EmptyTensorsWithinTheLimitStillDescribe) {
  EdgeCase flatten{"", "Flatten", {{"x", {0, 1 << 14, 1 << 14}}}};
  EXPECT_EQ(DescribedShape(flatten).value(), (Shape{0, 1 << 28}));
  EdgeCase concat{"", "Concat", {{"a", {0, 1 << 27}}, {"b", {0, 1 << 27}}}};
  EXPECT_EQ(DescribedShape(concat).value(), (Shape{0, 1 << 28}));
  concat.inputs = {{"a", {0, kMaxTensorElements / 2}},
                   {"b", {0, kMaxTensorElements / 2}}};
  concat.max_tensor_elements = kInt64Max;
  EXPECT_EQ(DescribedShape(concat).value(), (Shape{0, kMaxTensorElements}));
}

TEST(EdgeShapes, LargestStridesAndPaddingsStillCompute) {
  // Windows 2^31 − 1 apart, and a padded extent of 2^31 − 2 (the padding's
  // 2^30 − 3 zeros on each side of x) with stride + padding = 2^31 − 1.
  const int64_t pad = (int64_t{1} << 30) - 3;
  const std::vector<AttrMap> attrs = {
      {{"stride", Ints{k2To31 - 1, k2To31 - 1}}},
      {{"stride", Ints{k2To31 - 1 - pad, 1}}, {"padding", Ints{pad, 0}}}};
  const std::vector<Shape> outputs = {{1, 1, 1, 1}, {1, 1, 2, 4}};
  for (size_t i = 0; i < attrs.size(); ++i) {
    OpCase c("Conv2d", {{"x", kImage}, {"w", {1, 1, 1, 1}}, {"b", {1}}},
             attrs[i]);
    auto r = RunCase(c, DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outputs.at("out0").shape(), outputs[i]);
    ExpectGradientsCorrect(c);
  }
  ExpectGradientsCorrect(
      OpCase("MaxPool2d", {{"x", kImage}},
             {{"kernel", Ints{2, 2}}, {"stride", Ints{k2To31 - 1, 1}}}));
}

}  // namespace
}  // namespace gradserve::testing
