// ConvTranspose1d/2d: gradients (oneDNN's deconvolution in float32 against
// the float64 loops, which finite differences check), torch's output sizes
// and its refusals, named before anything runs.
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {
namespace {

using Ints = std::vector<int64_t>;

// torch.nn.functional.conv_transpose2d(ones(1, 1, 2, 2), ones(1, 1, 2, 2),
// stride=2, output_padding=1): each input copies the kernel into its own
// 2x2 block; the output-padded last row and column stay 0.
TEST(ConvTranspose2d, StrideAndOutputPaddingAsTorch) {
  OpCase c("ConvTranspose2d", {{"x", {1, 1, 2, 2}}, {"w", {1, 1, 2, 2}}},
           {{"stride", Ints{2, 2}}, {"output_padding", Ints{1, 1}}});
  c.inputs[1].placement = Placement::kParameter;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto r = RunPlaced(c,
                       {F32({1, 1, 2, 2}, {1, 2, 3, 4}),
                        F32({1, 1, 2, 2}, {1, 10, 100, 1000})},
                       Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({1, 1, 5, 5}, {1,   10,   2,   20,   0,  //
                                   100, 1000, 200, 2000, 0,  //
                                   3,   30,   4,   40,   0,  //
                                   300, 3000, 400, 4000, 0,  //
                                   0,   0,    0,   0,    0}),
                0, "y");
  }
}

// Dilated with output_padding beyond the padding: a negative right padding
// oneDNN refuses; the loops serve float32 too.
TEST(ConvTranspose1d, DilatedOutputPaddingGradients) {
  ExpectGradientsCorrect(OpCase("ConvTranspose1d",
                                {{"x", {2, 4, 5}}, {"w", {4, 1, 3}}, {""}},
                                {{"groups", int64_t{4}},
                                 {"dilation", int64_t{3}},
                                 {"output_padding", int64_t{2}}}));
}

TEST(ConvTranspose2d, GroupedGradients) {
  ExpectGradientsCorrect(OpCase(
      "ConvTranspose2d", {{"x", {2, 4, 3, 2}}, {"w", {4, 3, 2, 3}}, {"b", {6}}},
      {{"groups", int64_t{2}},
       {"stride", Ints{2, 1}},
       {"padding", Ints{1, 0}},
       {"output_padding", Ints{1, 0}}}));
}

TEST(ConvTranspose, RejectsWhatTorchRejects) {
  const std::vector<TestInput> in = {{"x", {1, 2, 4}}, {"w", {2, 3, 3}}};
  ExpectError(OpCase("ConvTranspose1d", in,
                     {{"stride", int64_t{2}}, {"output_padding", int64_t{2}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (ConvTranspose1d)", "'output_padding'",
               "smaller than stride [2] or dilation [1]", "2"});
  ExpectError(OpCase("ConvTranspose1d", {{"x", {1, 3, 4}}, {"w", {2, 3, 3}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (ConvTranspose1d)", "input 'weight'",
               "[C_in = 3, C_out/groups", "got [2, 3, 3]"});
  ExpectError(
      OpCase("ConvTranspose1d", in, {{"groups", int64_t{4}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (ConvTranspose1d)", "input 'weight'", "groups = 4"});
  ExpectError(
      OpCase("ConvTranspose1d", in, {{"padding", int64_t{4}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (ConvTranspose1d)", "would be -2", "positive size"});
  ExpectError(OpCase("ConvTranspose1d",
                     {{"x", {1, 2, 4}}, {"w", {2, 3, 3}}, {"b", {2}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (ConvTranspose1d)", "input 'bias'", "[3]"});
  ExpectError(OpCase("ConvTranspose2d", in), absl::StatusCode::kInvalidArgument,
              {"node 'node' (ConvTranspose2d)", "input 'weight'", "rank"});
}

}  // namespace
}  // namespace gradserve::testing
