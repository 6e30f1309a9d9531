// Embedding: torch's rows and weight gradients (padding_idx,
// scale_grad_by_freq), and its checks: attributes before allocation,
// indices before anything is written.
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {
namespace {

OpCase EmbeddingCase(AttrMap attrs = {}) {
  TestInput indices{"i", {2, 3}, Init::kLabels};
  indices.classes = 4;
  TestInput weight{"w", {4, 2}};
  weight.placement = Placement::kParameter;
  return OpCase("Embedding", {indices, weight}, std::move(attrs));
}

Tensor Weight() {
  return F32({4, 2}, {0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0, -2.0});
}
Tensor Indices() { return I64({2, 3}, {1, 3, 1, 0, 3, 3}); }
Tensor Seed() {
  return F32({2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
}

// Values from torch 1.13: F.embedding(i, w, **attrs), autograd.grad(y, w,
// seed).
void ExpectWeightGradient(AttrMap attrs, const std::vector<float>& want) {
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    auto r =
        RunPlaced(EmbeddingCase(attrs), {Indices(), Weight()}, Seed(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"),
                F32({2, 3, 2}, {2.0, 0.25, 3.0, -2.0, 2.0, 0.25, 0.5, -1.0, 3.0,
                                -2.0, 3.0, -2.0}),
                0, "y");
    ExpectClose(r->gradients.at("w"), F32({4, 2}, want), 1e-7, "dL/dw");
  }
}

TEST(Embedding, RowsAndGradientMatchTorch) {
  ExpectWeightGradient({}, {7, 8, 6, 8, 0, 0, 23, 26});
}

TEST(Embedding, PaddingIdxRowGetsNoGradient) {
  ExpectWeightGradient({{"padding_idx", int64_t{-1}}},
                       {7, 8, 6, 8, 0, 0, 0, 0});
}

TEST(Embedding, ScaleGradByFreq) {
  ExpectWeightGradient(
      {{"padding_idx", int64_t{1}}, {"scale_grad_by_freq", int64_t{1}}},
      {7, 8, 0, 0, 0, 0, 23.0f / 3, 26.0f / 3});
}

TEST(Embedding, GradientsMatchFiniteDifferences) {
  ExpectGradientsCorrect(EmbeddingCase());
}

TEST(Embedding, IndexOutOfRangeNamesNodeAndIndex) {
  for (int64_t bad : {4, -1}) {
    auto r = RunPlaced(EmbeddingCase(),
                       {I64({2, 3}, {1, 3, bad, 0, 3, 3}), Weight()}, Seed(),
                       DType::kFloat32);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& part :
         {std::string("node 'node' (Embedding)"),
          std::string("input 'indices'"),
          absl::StrCat("index ", bad, " at flat index 2"),
          std::string("[0, 4)")}) {
      EXPECT_NE(r.status().message().find(part), std::string::npos)
          << r.status();
    }
  }
}

TEST(Embedding, RejectsBadAttributesAndInputs) {
  ExpectError(EmbeddingCase({{"padding_idx", int64_t{4}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (Embedding)", "'padding_idx'", "[-4, 4)", "4"});
  ExpectError(EmbeddingCase({{"padding_idx", std::string("last")}}),
              absl::StatusCode::kInvalidArgument,
              {"'padding_idx'", "\"none\" or an int", "last"});
  ExpectError(EmbeddingCase({{"scale_grad_by_freq", int64_t{2}}}),
              absl::StatusCode::kInvalidArgument,
              {"'scale_grad_by_freq'", "0 or 1", "2"});
  OpCase c = EmbeddingCase();
  c.inputs[1].shape = {4, 2, 1};
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (Embedding)", "input 'weight'", "[4, 2, 1]"});
  c = EmbeddingCase();
  c.inputs[0] = {"i", {2, 3}};
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (Embedding)", "input 'indices'", "int64"});
}

}  // namespace
}  // namespace gradserve::testing
