#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

// oneDNN's vectorised exp and log are accurate to a few float32 ulps
// (log(1) comes out as 1.4e-6), so known values allow that much.
constexpr double kKnownTolerance = 1e-5;

OpCase SoftmaxCase(const std::string& op, Shape shape, int64_t axis) {
  return OpCase(op, {{"x", std::move(shape), Init::kUniform, -3.0, 3.0}},
                {{"axis", axis}});
}

class SoftmaxGradients : public ::testing::TestWithParam<std::string> {};

TEST_P(SoftmaxGradients, LastAxis) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {4, 7}, -1));
}

TEST_P(SoftmaxGradients, DefaultAxisIsLast) {
  ExpectGradientsCorrect(OpCase(GetParam(), {{"x", {3, 5}}}));
}

TEST_P(SoftmaxGradients, FirstAxis) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {5, 3}, 0));
}

TEST_P(SoftmaxGradients, MiddleAxisRank3) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {2, 5, 3}, 1));
}

TEST_P(SoftmaxGradients, NegativeAxisRank4) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {2, 3, 4, 5}, -3));
}

TEST_P(SoftmaxGradients, BatchOne) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {1, 9}, 1));
}

TEST_P(SoftmaxGradients, SingleElementAxis) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {3, 1}, 1));
}

TEST_P(SoftmaxGradients, Rank1) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {11}, 0));
}

TEST_P(SoftmaxGradients, LongAxis) {
  ExpectGradientsCorrect(SoftmaxCase(GetParam(), {2, 1000}, 1));
}

TEST_P(SoftmaxGradients, LargeInputsBothPaths) {
  // exp(500) overflows float32 and exp(800) float64 unless the maximum is
  // subtracted first.
  OpCase c = SoftmaxCase(GetParam(), {3, 6}, 1);
  c.inputs[0].lo = 790;
  c.inputs[0].hi = 810;
  ExpectGradientsCorrect(c);
}

TEST_P(SoftmaxGradients, ScalarIsOneElement) {
  OpCase c = SoftmaxCase(GetParam(), {}, -1);
  auto r = RunCase(c, DType::kFloat32);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"),
              Tensor::Scalar<float>(GetParam() == "Softmax" ? 1 : 0),
              kKnownTolerance, "y");
}

TEST_P(SoftmaxGradients, EmptyInputs) {
  for (const Shape& shape : {Shape{2, 0}, Shape{0, 3}}) {
    auto r = RunCase(SoftmaxCase(GetParam(), shape, 1), DType::kFloat32);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outputs.at("out0").shape(), shape);
    EXPECT_EQ(r->gradients.at("x").shape(), shape);
  }
}

TEST_P(SoftmaxGradients, RejectsBadAxis) {
  ExpectError(SoftmaxCase(GetParam(), {2, 3}, 2),
              absl::StatusCode::kInvalidArgument,
              {"node 'node' (" + GetParam() + ")", "attribute 'axis'",
               "[-2, 2)", "got 2"});
  ExpectError(SoftmaxCase(GetParam(), {2, 3}, -3),
              absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'axis'", "got -3"});
}

TEST_P(SoftmaxGradients, RejectsWrongAttributeType) {
  OpCase c(GetParam(), {{"x", {2, 3}}}, {{"axis", std::string("last")}});
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node'", "attribute 'axis'", "must be int", "string"});
}

TEST_P(SoftmaxGradients, RejectsIntegerInput) {
  ExpectRejectsInt64Input(OpCase(GetParam(), {{"x", {2, 3}}}), 0, "x");
}

INSTANTIATE_TEST_SUITE_P(Softmax, SoftmaxGradients,
                         ::testing::Values("Softmax", "LogSoftmax"));

// Values from torch.softmax / torch.log_softmax, backward with
// dY = [[1, 0, -1], [2, 0, 0]].
struct KnownCase {
  std::string op;
  int64_t axis;
  std::vector<float> y, dx;
};

TEST(Softmax, KnownValues) {
  const KnownCase cases[] = {
      {"Softmax",
       -1,
       {0.09003057, 0.24472848, 0.66524094, 1 / 3.f, 1 / 3.f, 1 / 3.f},
       {0.14181709, 0.14077036, -0.28258744, 0.44444442, -0.22222224,
        -0.22222224}},
      {"Softmax",
       0,
       {0.5, 0.7310586, 0.88079703, 0.5, 0.26894143, 0.11920292},
       {-0.25, 0.0, -0.10499363, 0.25, 0.0, 0.10499357}},
      {"LogSoftmax",
       -1,
       {-2.4076059, -1.4076059, -0.40760595, -1.0986123, -1.0986123,
        -1.0986123},
       {1.0, 0.0, -1.0, 1.3333334, -0.6666666, -0.6666666}},
      {"LogSoftmax",
       0,
       {-0.6931472, -0.31326166, -0.12692805, -0.6931472, -1.3132616,
        -2.126928},
       {-0.5, 0.0, -0.11920297, 0.5, 0.0, 0.11920291}},
  };
  for (const KnownCase& k : cases) {
    SCOPED_TRACE(k.op + " axis " + std::to_string(k.axis));
    auto r = RunOnValues(SoftmaxCase(k.op, {2, 3}, k.axis),
                         {F32({2, 3}, {1, 2, 3, 1, 1, 1})},
                         F32({2, 3}, {1, 0, -1, 2, 0, 0}));
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->outputs.at("out0"), F32({2, 3}, k.y), kKnownTolerance, "y");
    ExpectClose(r->gradients.at("x"), F32({2, 3}, k.dx), kKnownTolerance, "dx");
  }
}

TEST(Softmax, LargeLogitsStayFinite) {
  // Without subtracting the maximum, exp(1001) overflows.
  const Tensor x = F32({3}, {1000, 1001, -1000});
  auto soft = RunOnValues(SoftmaxCase("Softmax", {3}, 0), {x});
  ASSERT_TRUE(soft.ok()) << soft.status();
  ExpectClose(soft->outputs.at("out0"), F32({3}, {0.26894143, 0.7310586, 0.0}),
              kKnownTolerance, "softmax");
  auto log = RunOnValues(SoftmaxCase("LogSoftmax", {3}, 0), {x});
  ASSERT_TRUE(log.ok()) << log.status();
  ExpectClose(log->outputs.at("out0"),
              F32({3}, {-1.3132616, -0.31326166, -2001.3132}), kKnownTolerance,
              "log_softmax");
}

}  // namespace
}  // namespace gradserve::testing
