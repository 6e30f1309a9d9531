#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

OpCase LabelsCase(int64_t n, int64_t classes, const std::string& reduction) {
  return LossCase("CrossEntropyLoss",
                  {{"x", {n, classes}, Init::kUniform, -2, 2},
                   {"y", {n}, Init::kLabels, 0, 0, classes, false}},
                  reduction);
}

OpCase ProbabilitiesCase(int64_t n, int64_t classes,
                         const std::string& reduction) {
  return LossCase("CrossEntropyLoss",
                  {{"x", {n, classes}, Init::kUniform, -2, 2},
                   {"t", {n, classes}, Init::kProbabilities}},
                  reduction);
}

TEST(CrossEntropyLoss, GradientsLabelsMean) {
  ExpectGradientsCorrect(LabelsCase(6, 5, "mean"));
}

TEST(CrossEntropyLoss, GradientsLabelsSum) {
  ExpectGradientsCorrect(LabelsCase(6, 5, "sum"));
}

TEST(CrossEntropyLoss, GradientsProbabilitiesMean) {
  ExpectGradientsCorrect(ProbabilitiesCase(4, 3, "mean"));
}

TEST(CrossEntropyLoss, GradientsProbabilitiesSum) {
  ExpectGradientsCorrect(ProbabilitiesCase(4, 3, "sum"));
}

TEST(CrossEntropyLoss, BatchOne) {
  ExpectGradientsCorrect(LabelsCase(1, 7, "mean"));
  ExpectGradientsCorrect(ProbabilitiesCase(1, 7, "mean"));
}

// One class: softmax is 1 and the label 0, so loss and gradients are 0.
TEST(CrossEntropyLoss, OneClass) {
  ExpectLoss("CrossEntropyLoss", "mean",
             {{"x", F32({3, 1}, {0.5, -2, 7})}, {"y", I64({3}, {0, 0, 0})}},
             DType::kFloat64, 0, 0, {{"x", F64({3, 1}, {0, 0, 0})}});
  ExpectLoss("CrossEntropyLoss", "sum",
             {{"x", F32({2, 1}, {0.5, -2})}, {"t", F32({2, 1}, {1, 0.25})}},
             DType::kFloat64, 0, 0,
             {{"x", F64({2, 1}, {0, 0})}, {"t", F64({2, 1}, {0, 0})}});
  ExpectGradientsCorrect(LabelsCase(4, 1, "sum"));
}

// Values from torch 1.13: F.cross_entropy(x, target, reduction=...) and its
// backward.
Tensor Logits() { return F32({2, 3}, {1, 2, 0.5, -1, 0, 3}); }

TEST(CrossEntropyLoss, KnownValuesLabelsMatchTorch) {
  NamedTensors in = {{"x", Logits()}, {"y", I64({2}, {2, 0})}};
  ExpectLoss("CrossEntropyLoss", "mean", in, DType::kFloat64, 1e-15,
             3.015126343932687,
             {{"x", F64({2, 3}, {0.11561194881107452, 0.3142658596058812,
                                 -0.4298778084169558, -0.4914260872272398,
                                 0.023306311288986945, 0.4681197759382529})}});
  ExpectLoss("CrossEntropyLoss", "sum", in, DType::kFloat64, 1e-15,
             6.030252687865374,
             {{"x", F64({2, 3}, {0.23122389762214904, 0.6285317192117624,
                                 -0.8597556168339116, -0.9828521744544796,
                                 0.04661262257797389, 0.9362395518765058})}});
}

TEST(CrossEntropyLoss, KnownValuesProbabilitiesMatchTorch) {
  ExpectLoss(
      "CrossEntropyLoss", "mean",
      {{"x", Logits()}, {"t", F32({2, 3}, {0.25, 0.5, 0.25, 0, 0.125, 0.875})}},
      DType::kFloat64, 1e-15, 0.765126343932687,
      {{"x", F64({2, 3}, {-0.00938805118892548, 0.06426585960588121,
                          -0.05487780841695576, 0.008573912772760194,
                          -0.03919368871101306, 0.03061977593825288})},
       {"t", F64({2, 3}, {0.7321843920539725, 0.23218439205397245,
                          0.9821843920539725, 2.0329419518787146,
                          1.5329419518787146, 0.03294195187871456})}});
}

// The target's gradient alone: Backward then has only the logits and lse.
TEST(CrossEntropyLoss, TargetGradientAlone) {
  ExpectLoss(
      "CrossEntropyLoss", "sum",
      {{"x", F32({1, 3}, {1, 2, 0.5})}, {"t", F32({1, 3}, {0.5, 0.25, 0.25})}},
      DType::kFloat64, 1e-15, 1.339368784107945,
      {{"t", F64({1, 3},
                 {1.464368784107945, 0.4643687841079449, 1.964368784107945})}});
}

// Rows of the target need not sum to 1: torch's gradient is then
// softmax·Σ_c t_c − t, not softmax − t.
TEST(CrossEntropyLoss, UnnormalisedProbabilitiesMatchTorch) {
  ExpectLoss(
      "CrossEntropyLoss", "sum",
      {{"x", Logits()}, {"t", F32({2, 3}, {0.25, 0, 0.25, 1.5, 0.5, 0})}},
      DType::kFloat64, 1e-15, 8.488952199568832,
      {{"x", F64({2, 3}, {-0.1343880511889255, 0.3142658596058812,
                          -0.17987780841695578, -1.4657043489089592,
                          -0.40677475484405223, 1.8724791037530115})},
       {"t", F64({2, 3}, {1.464368784107945, 0.4643687841079449,
                          1.964368784107945, 4.065883903757429,
                          3.0658839037574293, 0.06588390375742911})}});
}

// dL/dx = (Y − T) / N with Y = softmax(x) and T the one-hot labels, computed
// here independently of the op.
TEST(CrossEntropyLoss, GradientIsSoftmaxMinusOneHotOverN) {
  const int64_t n = 5, classes = 4;
  Tensor x = MakeInput({"x", {n, classes}, Init::kUniform, -3, 3}, 11);
  Tensor y = MakeInput({"y", {n}, Init::kLabels, 0, 0, classes}, 12);
  std::vector<double> expected;
  double loss = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* row = x.data<float>() + r * classes;
    const double m = *std::max_element(row, row + classes);
    double z = 0;
    for (int64_t c = 0; c < classes; ++c) z += std::exp(row[c] - m);
    const int64_t label = y.data<int64_t>()[r];
    loss -= std::log(std::exp(row[label] - m) / z) / n;
    for (int64_t c = 0; c < classes; ++c) {
      expected.push_back((std::exp(row[c] - m) / z - (c == label)) / n);
    }
  }
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ExpectLoss("CrossEntropyLoss", "mean", {{"x", x}, {"y", y}}, dtype,
               dtype == DType::kFloat64 ? 1e-15 : 1e-6, loss,
               {{"x", F64({n, classes}, expected)}});
  }
}

TEST(CrossEntropyLoss, SumIsNTimesMean) {
  const int64_t n = 6;
  NamedTensors in = {{"x", MakeInput({"x", {n, 3}, Init::kUniform, -2, 2}, 3)},
                     {"t", MakeInput({"t", {n, 3}, Init::kProbabilities}, 4)}};
  auto mean = RunLoss("CrossEntropyLoss", "mean", in, {"x", "t"});
  auto sum = RunLoss("CrossEntropyLoss", "sum", in, {"x", "t"});
  ASSERT_TRUE(mean.ok()) << mean.status();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_NEAR(LossValue(*sum), n * LossValue(*mean), 1e-13);
  EXPECT_GT(LossValue(*mean), 0);
  for (const char* name : {"x", "t"}) {
    Tensor scaled = mean->gradients.at(name).Clone();
    for (double& v : scaled.mutable_values<double>()) v *= n;
    ExpectClose(sum->gradients.at(name), scaled, 1e-14, name);
  }
}

// Logits far apart overflow a naive exp; torch gives 2000 and [1, 0, −1].
TEST(CrossEntropyLoss, LargeLogitsStayFinite) {
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ExpectLoss("CrossEntropyLoss", "mean",
               {{"x", F32({1, 3}, {1000, 0, -1000})}, {"y", I64({1}, {2})}},
               dtype, 0, 2000, {{"x", F64({1, 3}, {1, 0, -1})}});
  }
}

// 2^25 equal logits: the loss is log(2^25) (a float32 sum of the 2^25 ones
// stops at 2^24 and gave log(2^24)); the probability target's sum too.
TEST(CrossEntropyLoss, SumOverManyClassesIsAccurate) {
  const int64_t classes = int64_t{1} << 25;
  const Tensor x = Tensor::Zeros(DType::kFloat32, {1, classes});
  Tensor t = Tensor::Empty(DType::kFloat32, {1, classes});
  std::fill_n(t.data<float>(), classes, 1.f / static_cast<float>(classes));
  const double expected = std::log(static_cast<double>(classes));
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    SCOPED_TRACE(DTypeName(dtype));
    for (const NamedTensors& inputs :
         {NamedTensors{{"x", x}, {"y", I64({1}, {0})}},
          NamedTensors{{"x", x}, {"t", t}}}) {
      auto r = RunLoss("CrossEntropyLoss", "mean", inputs, {}, dtype);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_NEAR(LossValue(*r), expected, 2e-7 * expected);
    }
  }
}

TEST(CrossEntropyLoss, EmptyBatch) {
  ExpectEmptyReductions("CrossEntropyLoss",
                        {{"x", F32({0, 3}, {})}, {"y", I64({0}, {})}}, {"x"});
  ExpectEmptyReductions("CrossEntropyLoss",
                        {{"x", F32({0, 3}, {})}, {"t", F32({0, 3}, {})}},
                        {"x", "t"});
}

TEST(CrossEntropyLoss, RejectsNegativeLabel) {
  ExpectFailure(RunLoss("CrossEntropyLoss", "mean",
                        {{"x", F32({3, 4}, std::vector<float>(12, 0.5f))},
                         {"y", I64({3}, {1, -1, 2})}},
                        {"x"}),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (CrossEntropyLoss)", "input 'target' (value 'y')",
                 "class -1", "row 1", "C = 4"});
}

TEST(CrossEntropyLoss, RejectsLabelOfC) {
  ExpectFailure(RunLoss("CrossEntropyLoss", "sum",
                        {{"x", F32({3, 4}, std::vector<float>(12, 0.5f))},
                         {"y", I64({3}, {0, 3, 4})}},
                        {"x"}),
                absl::StatusCode::kInvalidArgument,
                {"node 'node' (CrossEntropyLoss)", "input 'target' (value 'y')",
                 "class 4", "row 2", "C = 4"});
}

TEST(CrossEntropyLoss, RejectsFloatLabels) {
  ExpectError(
      LossCase("CrossEntropyLoss", {{"x", {3, 4}}, {"y", {3}}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (CrossEntropyLoss)", "input 'target' (value 'y')",
       "int64 class labels of shape [3]",
       "float32 class probabilities of shape [3, 4]", "got float32 [3]"});
}

TEST(CrossEntropyLoss, RejectsLabelsOfWrongLength) {
  ExpectError(
      LossCase("CrossEntropyLoss",
               {{"x", {3, 4}}, {"y", {2}, Init::kLabels, 0, 0, 4}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"input 'target' (value 'y')", "got int64 [2]"});
}

TEST(CrossEntropyLoss, RejectsProbabilitiesOfWrongShape) {
  ExpectError(
      LossCase("CrossEntropyLoss", {{"x", {3, 4}}, {"t", {3, 5}}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"input 'target' (value 't')", "[3, 4]", "got float32 [3, 5]"});
}

TEST(CrossEntropyLoss, RejectsABatchedTargetForUnbatchedLogits) {
  ExpectError(
      LossCase("CrossEntropyLoss",
               {{"x", {4}}, {"y", {1}, Init::kLabels, 0, 0, 4}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (CrossEntropyLoss)", "input 'target' (value 'y')",
       "0-d int64 class label", "probabilities of shape [4]",
       "unbatched input 'logits' (value 'x') [4]", "got int64 [1]"});
  ExpectError(LossCase("CrossEntropyLoss",
                       {{"x", {}}, {"y", {}, Init::kLabels, 0, 0, 1}}, "mean"),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (CrossEntropyLoss)", "input 'logits' (value 'x')",
               "[N, C, d...] or [C]", "got shape []"});
}

// torch's [N, C, d1, ..., dk] logits: one row of C classes per sample and
// position, labels [N, d1, ..., dk] or probabilities of the logits' shape.
TEST(CrossEntropyLoss, SpatialDims) {
  for (const std::string reduction : {"mean", "sum"}) {
    ExpectGradientsCorrect(
        LossCase("CrossEntropyLoss",
                 {{"x", {2, 3, 2, 2}, Init::kUniform, -2, 2},
                  {"y", {2, 2, 2}, Init::kLabels, 0, 0, 3, false}},
                 reduction));
    ExpectGradientsCorrect(LossCase("CrossEntropyLoss",
                                    {{"x", {2, 3, 4}, Init::kUniform, -2, 2},
                                     {"t", {2, 3, 4}, Init::kProbabilities}},
                                    reduction));
  }
  // Values from torch 1.13: F.cross_entropy(x, y, reduction=...).backward().
  const NamedTensors in = {
      {"x", F32({1, 2, 2, 2}, {1, 2, 3, 0.5, -1, 0.25, 2, 1})},
      {"y", I64({1, 2, 2}, {1, 0, 0, 1})}};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ExpectLoss("CrossEntropyLoss", "mean", in, dtype, 1e-6, 0.7686227082948474,
               {{"x", F64({1, 2, 2, 2},
                          {0.22019926949447058, -0.037011799507922355,
                           -0.06723535534249878, 0.09438516719953635,
                           -0.2201992694944706, 0.03701179950792237,
                           0.06723535534249878, -0.09438516719953635})}});
    ExpectLoss(
        "CrossEntropyLoss", "sum", in, dtype, 1e-6, 3.0744908331793894,
        {{"x", F64({1, 2, 2, 2}, {0.8807970779778823, -0.14804719803168942,
                                  -0.2689414213699951, 0.3775406687981454,
                                  -0.8807970779778824, 0.14804719803168948,
                                  0.2689414213699951, -0.3775406687981454})}});
  }
  ExpectError(
      LossCase("CrossEntropyLoss",
               {{"x", {2, 3, 4}}, {"y", {2, 3}, Init::kLabels, 0, 0, 3}},
               "mean"),
      absl::StatusCode::kInvalidArgument,
      {"input 'target' (value 'y')", "labels of shape [2, 4]",
       "probabilities of shape [2, 3, 4]", "got int64 [2, 3]"});
}

// Unbatched logits [C] with a 0-d label or [C] probabilities, as torch
// takes them: a batch of one.
TEST(CrossEntropyLoss, Unbatched) {
  for (const std::string reduction : {"mean", "sum"}) {
    ExpectUnbatchedIsABatchOfOne(
        LossCase("CrossEntropyLoss",
                 {{"x", {5}, Init::kUniform, -2, 2},
                  {"y", {}, Init::kLabels, 0, 0, 5, false}},
                 reduction),
        {0, 1});
    ExpectUnbatchedIsABatchOfOne(LossCase("CrossEntropyLoss",
                                          {{"x", {5}, Init::kUniform, -2, 2},
                                           {"t", {5}, Init::kProbabilities}},
                                          reduction),
                                 {0, 1});
  }
}

TEST(CrossEntropyLoss, RejectsZeroClasses) {
  ExpectError(
      LossCase("CrossEntropyLoss",
               {{"x", {2, 0}}, {"y", {2}, Init::kLabels, 0, 0, 1}}, "mean"),
      absl::StatusCode::kInvalidArgument,
      {"input 'logits' (value 'x')", "at least one class", "[2, 0]"});
}

TEST(CrossEntropyLoss, RejectsUnknownReduction) {
  ExpectError(LabelsCase(2, 3, "average"), absl::StatusCode::kInvalidArgument,
              {"node 'node'", "'reduction'", "\"mean\", \"sum\" or \"none\"",
               "\"average\""});
}

}  // namespace
}  // namespace gradserve::testing
