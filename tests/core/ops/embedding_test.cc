// Embedding: torch's rows and weight gradients (padding_idx,
// scale_grad_by_freq, max_norm with norm_type), and its checks: attributes
// before allocation, indices before anything is written.
#include <cmath>
#include <limits>

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
void ExpectRowsAndGradient(AttrMap attrs, const std::vector<float>& rows,
                           const std::vector<float>& want, double tol = 0) {
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    auto r =
        RunPlaced(EmbeddingCase(attrs), {Indices(), Weight()}, Seed(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({2, 3, 2}, rows), tol, "y");
    ExpectClose(r->gradients.at("w"), F32({4, 2}, want), 1e-7, "dL/dw");
  }
}

void ExpectWeightGradient(AttrMap attrs, const std::vector<float>& want) {
  ExpectRowsAndGradient(
      attrs, {2.0, 0.25, 3.0, -2.0, 2.0, 0.25, 0.5, -1.0, 3.0, -2.0, 3.0, -2.0},
      want);
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

// max_norm: the looked-up rows 1 and 3 are over it and come scaled by
// max_norm / (norm + 1e-7); row 0 is within it (for inf: exactly at it);
// row 2 is not looked up. The weight gradient is the plain scatter-add, as
// torch's (its renorm runs in place under no_grad).
TEST(Embedding, MaxNormRenormalisesLookedUpRowsAsTorch) {
  const std::vector<float> scatter = {7, 8, 6, 8, 0, 0, 23, 26};
  ExpectRowsAndGradient(
      {{"max_norm", 1.5}},
      {1.4884167909622192, 0.1860520988702774, 1.2480753660202026,
       -0.8320502638816833, 1.4884167909622192, 0.1860520988702774, 0.5, -1.0,
       1.2480753660202026, -0.8320502638816833, 1.2480753660202026,
       -0.8320502638816833},
      scatter, 1e-7);
  ExpectRowsAndGradient(
      {{"max_norm", 2.0}, {"norm_type", 1.0}},
      {1.7777776718139648, 0.2222222089767456, 1.2000000476837158,
       -0.800000011920929, 1.7777776718139648, 0.2222222089767456, 0.5, -1.0,
       1.2000000476837158, -0.800000011920929, 1.2000000476837158,
       -0.800000011920929},
      scatter, 1e-7);
  ExpectRowsAndGradient(
      {{"max_norm", 1.0}, {"norm_type", std::string("inf")}},
      {0.9999999403953552, 0.1249999925494194, 0.9999999403953552,
       -0.6666666269302368, 0.9999999403953552, 0.1249999925494194, 0.5, -1.0,
       0.9999999403953552, -0.6666666269302368, 0.9999999403953552,
       -0.6666666269302368},
      scatter, 1e-7);
}

// A max_norm above every row's norm changes nothing: the gradient is then
// the derivative, checked by finite differences.
TEST(Embedding, MaxNormAboveEveryRowMatchesFiniteDifferences) {
  ExpectWeightGradient({{"max_norm", 10.0}}, {7, 8, 6, 8, 0, 0, 23, 26});
  ExpectGradientsCorrect(EmbeddingCase({{"max_norm", 100.0}}));
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
  ExpectError(EmbeddingCase({{"max_norm", std::string("big")}}),
              absl::StatusCode::kInvalidArgument,
              {"'max_norm'", "\"none\" or a float", "big"});
  ExpectError(EmbeddingCase({{"max_norm", 1.0}, {"norm_type", NAN}}),
              absl::StatusCode::kInvalidArgument, {"'norm_type'", "finite"});
  ExpectError(
      EmbeddingCase({{"max_norm", 1.0}, {"norm_type", std::string("two")}}),
      absl::StatusCode::kInvalidArgument, {"'norm_type'", "\"inf\"", "two"});
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
