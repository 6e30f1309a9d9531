// The losses' options beyond the reduction to a scalar, as PyTorch defines
// them: reduction "none", class weights (CrossEntropyLoss, NLLLoss),
// ignore_index, elementwise weights (BCELoss, BCEWithLogitsLoss) and
// BCEWithLogitsLoss's pos_weight. Gradients of every float input (the
// weights too) against finite differences, known values from torch 1.13.
#include <cmath>

#include "gtest/gtest.h"
#include "tests/core/ops/loss_test_util.h"
#include "tests/core/ops/unbatched_test_util.h"

namespace gradserve::testing {
namespace {

const std::vector<std::string> kReductions = {"mean", "sum", "none"};

TestInput Labels(std::string name, Shape shape, int64_t classes) {
  return {
      std::move(name), std::move(shape), Init::kLabels, 0, 0, classes, false};
}

TEST(LossOptions, NoneReturnsTheTermsOfEveryLoss) {
  ExpectGradientsCorrect(
      LossCase("MSELoss", {{"p", {3, 4}}, {"t", {3, 4}}}, "none"));
  ExpectGradientsCorrect(LossCase("BCELoss",
                                  {{"p", {3, 4}, Init::kUniform, 0.05, 0.95},
                                   {"t", {3, 4}, Init::kUniform, 0, 1}},
                                  "none"));
  ExpectGradientsCorrect(LossCase("BCEWithLogitsLoss",
                                  {{"z", {2, 3}, Init::kUniform, -3, 3},
                                   {"t", {2, 3}, Init::kUniform, 0, 1}},
                                  "none"));
  ExpectGradientsCorrect(LossCase(
      "CrossEntropyLoss",
      {{"x", {2, 3, 2}, Init::kUniform, -2, 2}, Labels("y", {2, 2}, 3)},
      "none"));
  ExpectGradientsCorrect(LossCase("CrossEntropyLoss",
                                  {{"x", {4, 3}, Init::kUniform, -2, 2},
                                   {"t", {4, 3}, Init::kProbabilities}},
                                  "none"));
  ExpectGradientsCorrect(LossCase(
      "NLLLoss", {{"lp", {5, 4}, Init::kUniform, -3, 0}, Labels("y", {5}, 4)},
      "none"));
  // Unbatched [C] under "none": a 0-d term.
  ExpectUnbatchedIsABatchOfOne(
      LossCase("CrossEntropyLoss",
               {{"x", {4}, Init::kUniform, -2, 2}, Labels("y", {}, 4)}, "none"),
      {0, 1});
  auto r = RunOnValues(LossCase("MSELoss", {{"p", {2}}, {"t", {2}}}, "none"),
                       {F32({2}, {1, 4}), F32({2}, {3, 1})}, F32({2}, {1, 10}));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F32({2}, {4, 9}), 0, "terms");
  ExpectClose(r->gradients.at("p"), F32({2}, {-4, 60}), 0, "dp");
}

// Class weights and ignore_index, with and without label_smoothing
// (CrossEntropyLoss), for every reduction.
TEST(LossOptions, ClassWeightsIgnoreIndexAndLabelSmoothing) {
  for (const std::string& reduction : kReductions) {
    for (int64_t ignore : {int64_t{-100}, int64_t{1}}) {
      const AttrMap attrs = {{"reduction", reduction},
                             {"ignore_index", ignore}};
      ExpectGradientsCorrect(OpCase("NLLLoss",
                                    {{"lp", {6, 3}, Init::kUniform, -3, 0},
                                     Labels("y", {6}, 3),
                                     {"w", {3}, Init::kUniform, 0.5, 2}},
                                    attrs));
      for (double smoothing : {0.0, 0.25}) {
        AttrMap ce = attrs;
        ce["label_smoothing"] = smoothing;
        ExpectGradientsCorrect(OpCase("CrossEntropyLoss",
                                      {{"x", {3, 3, 2}, Init::kUniform, -2, 2},
                                       Labels("y", {3, 2}, 3),
                                       {"w", {3}, Init::kUniform, 0.5, 2}},
                                      ce));
        ExpectGradientsCorrect(OpCase(
            "CrossEntropyLoss",
            {{"x", {5, 4}, Init::kUniform, -2, 2}, Labels("y", {5}, 4)}, ce));
      }
    }
    for (double smoothing : {0.0, 0.4}) {
      ExpectGradientsCorrect(
          OpCase("CrossEntropyLoss",
                 {{"x", {4, 3}, Init::kUniform, -2, 2},
                  {"t", {4, 3}, Init::kProbabilities},
                  {"w", {3}, Init::kUniform, 0.5, 2}},
                 {{"reduction", reduction}, {"label_smoothing", smoothing}}));
    }
  }
}

// Values from torch 1.13 (float64): weight [0.5, 2, 3], ignore_index 1.
TEST(LossOptions, ClassWeightsKnownValues) {
  const Tensor w = F32({3}, {0.5, 2, 3});
  const Tensor t = I64({3}, {2, 0, 1});
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    OpCase nll("NLLLoss", {{"lp", {3, 3}}, {"y", {3}}, {"w", {3}}},
               {{"ignore_index", int64_t{1}}});
    nll.inputs[2].differentiable = false;
    auto r = RunOnValues(
        nll, {F32({3, 3}, {-0.5, -1, -2, -3, -0.25, -1.5, -1, -2, -0.1}), t, w},
        F32({}, {1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({}, {2.142857142857143}), 1e-6,
                "nll");
    ExpectClose(r->gradients.at("lp"),
                F32({3, 3}, {0, 0, -0.8571428571428571, -0.14285714285714285, 0,
                             0, 0, 0, 0}),
                1e-6, "dlp");
    const Tensor x = F32({3, 3}, {1, 2, 0.5, -1, 0, 3, 0.2, 0.1, -0.3});
    OpCase none("CrossEntropyLoss", {{"x", {3, 3}}, {"y", {3}}, {"w", {3}}},
                {{"reduction", std::string("none")}});
    r = RunOnValues(none, {x, t, w}, Tensor(), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(
        r->outputs.at("out0"),
        F32({3}, {5.8931063523238345, 2.0329419518787146, 2.0416553111065188}),
        1e-6, "ce none");
    OpCase ignored("CrossEntropyLoss", {{"x", {3, 3}}, {"y", {3}}, {"w", {3}}},
                   {{"ignore_index", int64_t{0}}});
    ignored.inputs[2].differentiable = false;
    r = RunOnValues(ignored, {x, t, w}, F32({}, {1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({}, {1.5869523326860706}), 1e-6,
                "ce ignored");
    ExpectClose(r->gradients.at("x"),
                F32({3, 3}, {0.13873433857328946, 0.3771190315270575,
                             -0.515853370100347, 0, 0, 0, 0.15927573641797443,
                             -0.25588135390378397, 0.09660561748580955}),
                1e-6, "dx, ce ignored");
  }
  // Every row ignored: "mean" is 0 / 0 = NaN, as in torch.
  auto r = RunLoss(
      "NLLLoss", "mean",
      {{"lp", F32({2, 2}, {-1, -1, -1, -1})}, {"y", I64({2}, {-100, -100})}},
      {"lp"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::isnan(LossValue(*r)));
}

// CrossEntropyLoss's label_smoothing against torch's values.
TEST(LossOptions, LabelSmoothingKnownValues) {
  // torch 1.13: weight [0.5, 2, 3], ignore_index 1, label_smoothing 0.2;
  // and probabilities with label_smoothing 0.3, "sum".
  const Tensor x = F32({3, 3}, {1, 2, 0.5, -1, 0, 3, 0.2, 0.1, -0.3});
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    OpCase labels("CrossEntropyLoss", {{"x", {3, 3}}, {"y", {3}}, {"w", {3}}},
                  {{"ignore_index", int64_t{1}}, {"label_smoothing", 0.2}});
    labels.inputs[2].differentiable = false;
    auto r =
        RunOnValues(labels, {x, I64({3}, {2, 0, 1}), F32({3}, {0.5, 2, 3})},
                    F32({}, {1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({}, {2.1148375130226693}), 1e-6,
                "labels");
    ExpectClose(
        r->gradients.at("x"),
        F32({3, 3}, {0.17325317621560354, 0.4587441209007265,
                     -0.6319972971163301, -0.12005333345193363,
                     -0.02788485410196762, 0.14793818755390126, 0, 0, 0}),
        1e-6, "dx, labels");
    OpCase probs("CrossEntropyLoss", {{"x", {3, 3}}, {"t", {3, 3}}},
                 {{"reduction", std::string("sum")}, {"label_smoothing", 0.3}});
    probs.inputs[1].differentiable = false;
    r = RunOnValues(probs,
                    {x, F32({3, 3}, {0.2, 0.3, 0.5, 1, 0, 0, 0.1, 0.1, 0.8})},
                    F32({}, {1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({}, {6.213080343418633}), 1e-6,
                "probabilities");
    ExpectClose(
        r->gradients.at("x"),
        F32({3, 3},
            {-0.008776102377850953, 0.31853171921176243, -0.3097556168339115,
             -0.7828521744544795, -0.05338737742202611, 0.8362395518765057,
             0.228189341044936, 0.19029661524054006, -0.4184859562854761}),
        1e-6, "dx, probabilities");
  }
  ExpectError(
      OpCase("CrossEntropyLoss", {{"x", {2, 3}}, Labels("y", {2}, 3)},
             {{"label_smoothing", 1.5}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (CrossEntropyLoss)", "'label_smoothing'", "in [0, 1]"});
}

TEST(LossOptions, ElementwiseWeightsAndPosWeight) {
  for (const std::string& reduction : kReductions) {
    for (Shape w : {Shape{4, 3}, Shape{3}, Shape{1}, Shape{4, 1}}) {
      ExpectGradientsCorrect(
          LossCase("BCELoss",
                   {{"p", {4, 3}, Init::kUniform, 0.05, 0.95},
                    {"t", {4, 3}, Init::kUniform, 0, 1},
                    {"w", w, Init::kUniform, 0.5, 2}},
                   reduction));
      ExpectGradientsCorrect(LossCase("BCEWithLogitsLoss",
                                      {{"z", {4, 3}, Init::kUniform, -3, 3},
                                       {"t", {4, 3}, Init::kUniform, 0, 1},
                                       {"w", w, Init::kUniform, 0.5, 2},
                                       {"pw", {3}, Init::kUniform, 0.5, 3}},
                                      reduction));
      ExpectGradientsCorrect(LossCase("BCEWithLogitsLoss",
                                      {{"z", {4, 3}, Init::kUniform, -3, 3},
                                       {"t", {4, 3}, Init::kUniform, 0, 1},
                                       {""},
                                       {"pw", w, Init::kUniform, 0.5, 3}},
                                      reduction));
    }
  }
  // torch 1.13: weight [2, 0.5], pos_weight [3, 0.5], reduction "sum".
  OpCase c("BCEWithLogitsLoss",
           {{"z", {2, 2}}, {"t", {2, 2}}, {"w", {2}}, {"pw", {2}}},
           {{"reduction", std::string("sum")}});
  for (int i : {1, 2, 3}) c.inputs[i].differentiable = false;
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    auto r =
        RunOnValues(c,
                    {F32({2, 2}, {0.5, -1, 2, 0}), F32({2, 2}, {1, 0, 0.25, 1}),
                     F32({2}, {2, 0.5}), F32({2}, {3, 0.5})},
                    F32({}, {1}), dtype);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({}, {6.555163860321045}), 1e-6,
                "loss");
    ExpectClose(r->gradients.at("z"),
                F32({2, 2}, {-2.265244012788872, 0.13447071068499755,
                             1.142391233933647, -0.125}),
                1e-6, "dz");
  }
}

TEST(LossOptions, RejectsBadWeights) {
  ExpectError(
      OpCase("NLLLoss", {{"lp", {2, 3}}, Labels("y", {2}, 3), {"w", {2}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (NLLLoss)", "input 'weight' (value 'w')", "[3]", "[2]"});
  ExpectError(
      OpCase(
          "BCELoss",
          {{"p", {2, 3}, Init::kUniform, 0.1, 0.9}, {"t", {2, 3}}, {"w", {2}}}),
      absl::StatusCode::kInvalidArgument,
      {"node 'node' (BCELoss)", "input 'weight' (value 'w') [2]",
       "must broadcast to the shape of input 'probabilities'", "[2, 3]"});
  ExpectError(OpCase("CrossEntropyLoss",
                     {{"x", {2, 3}}, {"t", {2, 3}, Init::kProbabilities}},
                     {{"ignore_index", int64_t{0}}}),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (CrossEntropyLoss)", "'ignore_index'",
               "class probabilities"});
  ExpectError(OpCase("MSELoss", {{"p", {2}}, {"t", {2}}, {"w", {2}}}),
              absl::StatusCode::kInvalidArgument, {"node 'node' (MSELoss)"});
}

}  // namespace
}  // namespace gradserve::testing
