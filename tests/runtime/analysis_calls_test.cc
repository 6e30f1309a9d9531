// The analysis use cases through the runtime: CheckGradients fails, naming
// the tensor and the element, on a graph with test-only ops whose backward
// is wrong (registered in this binary only: in both paths, or only in
// float32); graphs and sessions give the same answers through the program
// cache; gradient descent started exactly at a saddle does not move; and
// Diagnostics come back from Compute and TrainStep when asked for.
#include <cmath>

#include "absl/strings/str_join.h"
#include "core/op_registry.h"
#include "core/ops/op_util.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"
#include "runtime/compute_pool.h"
#include "runtime/runtime.h"
#include "tests/core/op_test_util.h"
#include "tests/status_testing.h"

namespace gradserve {
namespace {

using testing::ExpectStatus;
using testing::F32;
using testing::Node;
using testing::Uniform;

// y = x², whose backward claims dy/dx = slope·x: 2 is right, anything else
// a bug. `float32_slope` is what the float32 path uses.
class SquareOp : public Op {
 public:
  SquareOp(const TensorMeta& x, double slope, double float32_slope)
      : slope_(x.dtype == DType::kFloat32 ? float32_slope : slope) {
    outputs_ = {x};
  }

  SavedValues Saves(const std::vector<bool>&) const override {
    return {{0}, {}};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    if (outputs_[0].dtype == DType::kFloat32) return Square<float>(ctx);
    return Square<double>(ctx);
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    if (outputs_[0].dtype == DType::kFloat32) return Slope<float>(ctx);
    return Slope<double>(ctx);
  }

 private:
  template <typename T>
  absl::Status Square(ForwardContext& ctx) const {
    const T* x = ctx.input(0).data<T>();
    Tensor& y = ctx.AllocateOutput(0);
    for (int64_t i = 0; i < y.num_elements(); ++i) y.data<T>()[i] = x[i] * x[i];
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Slope(BackwardContext& ctx) const {
    const T* x = ctx.input(0).data<T>();
    const T* g = ctx.grad_output(0).data<T>();
    Tensor dx = Tensor::Empty(outputs_[0]);
    for (int64_t i = 0; i < dx.num_elements(); ++i) {
      dx.data<T>()[i] = static_cast<T>(g[i] * slope_ * x[i]);
    }
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }

  const double slope_;
};

OpSchema SquareSchema(std::string name, double slope, double float32_slope) {
  OpSchema s;
  s.name = std::move(name);
  s.description = "y = x² with a deliberately wrong backward (tests only)";
  s.inputs = {{"x"}};
  s.create = [slope, float32_slope](
                 const OpConfig& c) -> absl::StatusOr<std::unique_ptr<Op>> {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    return MakeOp(std::make_unique<SquareOp>(c.input(0), slope, float32_slope));
  };
  return s;
}

REGISTER_OP(SquareSchema("TestWrongSquare", 3, 3));
REGISTER_OP(SquareSchema("TestFloat32WrongSquare", 2, 2.5));

// L = Σ op(W) + Σ V·V: W goes through the op under test, V through Mul.
GraphDef SquaresGraph(const std::string& op) {
  GraphDef g;
  g.parameters["W"] = Uniform({2, 3}, 1, 0.5, 1.5);
  g.parameters["V"] = Uniform({4}, 2, -1, 1);
  g.nodes = {Node("square", op, {"W"}, "w2"), Node("sw", "Sum", {"w2"}, "a"),
             Node("vv", "Mul", {"V", "V"}, "v2"),
             Node("sv", "Sum", {"v2"}, "b"), Node("L", "Add", {"a", "b"}, "L")};
  return g;
}

// f(x, y) = x² − y² (or x² + y²) with x and y scalar parameters.
GraphDef Saddle(float x, float y, bool minimum = false) {
  GraphDef g;
  g.parameters["x"] = F32({1}, {x});
  g.parameters["y"] = F32({1}, {y});
  g.nodes = {Node("xx", "Mul", {"x", "x"}, "xx"),
             Node("yy", "Mul", {"y", "y"}, "yy"),
             Node("f", minimum ? "Add" : "Sub", {"xx", "yy"}, "f")};
  return g;
}

runtime::ModelSource GraphModel(GraphDef g) {
  runtime::ModelSource m;
  m.kind = runtime::ModelSource::Kind::kGraph;
  m.graph = std::move(g);
  return m;
}

runtime::ModelSource SessionModel(const std::string& id) {
  runtime::ModelSource m;
  m.kind = runtime::ModelSource::Kind::kSession;
  m.session_id = id;
  return m;
}

class AnalysisTest : public ::testing::Test {
 protected:
  absl::StatusOr<GradientCheck> Check(runtime::ModelSource model,
                                      std::string loss = "L") {
    runtime::CheckGradientsCall call;
    call.model = std::move(model);
    call.args.loss = std::move(loss);
    return runtime_.CheckGradients(ctx_, std::move(call));
  }

  absl::StatusOr<std::string> CreateSession(GraphDef g, double lr = 0.1) {
    runtime::CreateSessionCall create;
    create.model = GraphModel(std::move(g));
    create.optimizer = OptimizerConfig{SgdConfig{lr}};
    ASSIGN_OR_RETURN(auto info, runtime_.CreateSession(ctx_, create));
    return info.session_id;
  }

  absl::StatusOr<HessianSpectrum> Eigenvalues(runtime::ModelSource model,
                                              int64_t k, std::string loss) {
    runtime::HessianEigenvaluesCall call;
    call.model = std::move(model);
    call.args.loss = std::move(loss);
    call.k = k;
    return runtime_.HessianEigenvalues(ctx_, std::move(call));
  }

  absl::StatusOr<std::map<std::string, Tensor>> Hvp(
      runtime::ModelSource model, TensorMap vector,
      std::vector<std::string> wrt, std::string loss = "L") {
    runtime::HessianVectorProductCall call;
    call.model = std::move(model);
    call.args.loss = std::move(loss);
    call.args.wrt = std::move(wrt);
    call.vector = std::move(vector);
    return runtime_.HessianVectorProduct(ctx_, std::move(call));
  }

  runtime::ComputePool pool_{{1, 1}, 16};
  runtime::Runtime runtime_{runtime::RuntimeOptions{}, &pool_};
  runtime::CallContext ctx_;
};

TEST_F(AnalysisTest, AWrongBackwardFailsNamingTheTensorAndTheElement) {
  auto check = Check(GraphModel(SquaresGraph("TestWrongSquare")));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->passed);
  ASSERT_EQ(check->tensors.size(), 2u);
  const TensorCheck& v = check->tensors[0];  // parameters in name order
  const TensorCheck& w = check->tensors[1];
  EXPECT_EQ(v.name, "V");
  EXPECT_TRUE(v.passed);
  EXPECT_EQ(w.name, "W");
  EXPECT_FALSE(w.passed);
  EXPECT_FALSE(w.numeric_passed);
  EXPECT_EQ(w.elements_checked, 6);
  // The largest W has the largest error: 3w against 2w.
  const Tensor values = SquaresGraph("").parameters.at("W");
  const auto& x = values.values<float>();
  const int64_t largest = std::max_element(x.begin(), x.end()) - x.begin();
  EXPECT_EQ(w.worst_index, (std::vector<int64_t>{largest / 3, largest % 3}));
  EXPECT_NEAR(w.analytic, 3.0 * x[largest], 1e-6);
  EXPECT_NEAR(w.numeric, 2.0 * x[largest], 1e-6);
  EXPECT_NEAR(w.max_abs_error, x[largest], 1e-6);
  EXPECT_NEAR(w.max_rel_error, 0.5, 1e-6);
}

TEST_F(AnalysisTest, AWrongFloat32BackwardFailsOnlyTheFloat32Check) {
  auto check = Check(GraphModel(SquaresGraph("TestFloat32WrongSquare")));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->passed);
  const TensorCheck& w = check->tensors[1];
  EXPECT_EQ(w.name, "W");
  EXPECT_TRUE(w.numeric_passed);
  EXPECT_FALSE(w.float32_passed);
  EXPECT_FALSE(w.passed);
  EXPECT_EQ(w.float32_worst_index.size(), 2u);
  EXPECT_GT(w.float32_max_abs_error, 0.2);
  EXPECT_TRUE(check->tensors[0].passed);
}

TEST_F(AnalysisTest, SessionsAndGraphsAgreeAndProgramsAreCached) {
  const GraphDef g = Saddle(0.5f, -0.25f);
  auto id = CreateSession(g);
  ASSERT_TRUE(id.ok()) << id.status();
  TensorMap vector = {{"x", F32({1}, {1})}, {"y", F32({1}, {2})}};
  auto of_graph = Hvp(GraphModel(g), vector, {"x", "y"}, "f");
  ASSERT_TRUE(of_graph.ok()) << of_graph.status();
  const int64_t misses = runtime_.cache_stats().misses;
  auto of_session = Hvp(SessionModel(*id), vector, {"x", "y"}, "f");
  ASSERT_TRUE(of_session.ok()) << of_session.status();
  EXPECT_EQ(runtime_.cache_stats().misses, misses);  // the same structure
  for (const char* name : {"x", "y"}) {
    EXPECT_EQ(of_graph->at(name).values<float>(),
              of_session->at(name).values<float>());
  }
  EXPECT_NEAR(of_graph->at("x").values<float>()[0], 2, 1e-6);
  EXPECT_NEAR(of_graph->at("y").values<float>()[0], -4, 1e-6);
  auto check = Check(SessionModel(*id), "f");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->passed);
}

TEST_F(AnalysisTest, GradientDescentStartedAtTheSaddleDoesNotMove) {
  auto id = CreateSession(Saddle(0, 0));
  ASSERT_TRUE(id.ok()) << id.status();
  auto spectrum = Eigenvalues(SessionModel(*id), 1, "f");
  ASSERT_TRUE(spectrum.ok()) << spectrum.status();
  EXPECT_EQ(spectrum->critical_point, "saddle");
  EXPECT_NEAR(spectrum->largest[0], 2, 1e-8);
  EXPECT_NEAR(spectrum->smallest[0], -2, 1e-8);
  runtime::TrainStepCall step;
  step.session_id = *id;
  step.loss = "f";
  for (int i = 0; i < 5; ++i) {
    auto reply = runtime_.TrainStep(ctx_, step);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->grad_norm, 0);
  }
  runtime::GetParametersCall get;
  get.session_id = *id;
  auto values = runtime_.GetParameters(ctx_, get);
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->parameters.at("x").values<float>()[0], 0);
  EXPECT_EQ(values->parameters.at("y").values<float>()[0], 0);
  // A step off it along y, and descent runs away from the saddle.
  auto off = CreateSession(Saddle(0, 1e-3f));
  ASSERT_TRUE(off.ok());
  step.session_id = *off;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(runtime_.TrainStep(ctx_, step).ok());
  get.session_id = *off;
  values = runtime_.GetParameters(ctx_, get);
  ASSERT_TRUE(values.ok());
  EXPECT_NEAR(values->parameters.at("y").values<float>()[0],
              1e-3 * std::pow(1.2, 5), 1e-8);
}

TEST_F(AnalysisTest, AMinimumHasAllEigenvaluesPositive) {
  auto id = CreateSession(Saddle(0.5f, -0.3f, /*minimum=*/true), 0.25);
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::TrainStepCall step;
  step.session_id = *id;
  step.loss = "f";
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(runtime_.TrainStep(ctx_, step).ok());
  auto spectrum = Eigenvalues(SessionModel(*id), 2, "f");
  ASSERT_TRUE(spectrum.ok()) << spectrum.status();
  EXPECT_EQ(spectrum->critical_point, "minimum");
  EXPECT_LT(spectrum->gradient_norm, 1e-5);
  for (double lambda : spectrum->smallest) EXPECT_NEAR(lambda, 2, 1e-8);
}

TEST_F(AnalysisTest, DiagnosticsOnComputeAndTrainStepOnlyWhenAsked) {
  runtime::ComputeCall compute;
  compute.model = GraphModel(SquaresGraph("Mul"));
  compute.model.graph.nodes[0].inputs = {"W", "W"};
  compute.args.loss = "L";
  auto plain = runtime_.Compute(ctx_, compute);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->diagnostics.has_value());
  compute.diagnostics = true;
  auto diagnosed = runtime_.Compute(ctx_, compute);
  ASSERT_TRUE(diagnosed.ok()) << diagnosed.status();
  ASSERT_TRUE(diagnosed->diagnostics.has_value());
  EXPECT_EQ(diagnosed->diagnostics->values.size(), 5u);
  EXPECT_EQ(diagnosed->diagnostics->parameter_grad_norms.size(), 2u);

  auto id = CreateSession(Saddle(0.5f, 2));
  ASSERT_TRUE(id.ok());
  runtime::TrainStepCall step;
  step.session_id = *id;
  step.loss = "f";
  step.diagnostics = true;
  auto reply = runtime_.TrainStep(ctx_, step);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(reply->diagnostics.has_value());
  const Diagnostics& d = *reply->diagnostics;
  EXPECT_NEAR(d.parameter_grad_norms.at("x"), 1, 1e-6);  // |2x|
  EXPECT_NEAR(d.parameter_grad_norms.at("y"), 4, 1e-6);  // |−2y|
  ASSERT_EQ(d.values.size(), 3u);
  EXPECT_EQ(d.values[2].value, "f");
  EXPECT_NEAR(d.values[2].mean, 0.25 - 4, 1e-6);
  EXPECT_NEAR(d.values[2].grad_norm, 1, 1e-12);
  step.diagnostics = false;
  reply = runtime_.TrainStep(ctx_, step);
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->diagnostics.has_value());
}

TEST_F(AnalysisTest, BadInputsNameTheCulprit) {
  const GraphDef g = Saddle(1, 2);
  const TensorMap good = {{"x", F32({1}, {1})}, {"y", F32({1}, {1})}};
  TensorMap wrong_shape = good;
  wrong_shape["y"] = F32({2}, {1, 1});
  ExpectStatus(Hvp(GraphModel(g), wrong_shape, {}, "f").status(),
               absl::StatusCode::kInvalidArgument,
               {"vector['y']", "[1]", "float32 [2]"});
  TensorMap extra = good;
  extra["z"] = F32({1}, {1});
  ExpectStatus(Hvp(GraphModel(g), extra, {}, "f").status(),
               absl::StatusCode::kInvalidArgument,
               {"vector['z']", "not among wrt"});
  ExpectStatus(Hvp(GraphModel(g), {{"x", F32({1}, {1})}}, {}, "f").status(),
               absl::StatusCode::kInvalidArgument, {"vector", "wrt 'y'"});
  ExpectStatus(
      Hvp(GraphModel(g), {{"x", F32({1}, {NAN})}}, {"x"}, "f").status(),
      absl::StatusCode::kInvalidArgument, {"'x'[0]", "finite"});
  ExpectStatus(Hvp(GraphModel(g), good, {}, "").status(),
               absl::StatusCode::kInvalidArgument, {"loss"});
  // wrt not reaching the loss, and an intermediate value.
  GraphDef unreached = g;
  unreached.parameters["z"] = F32({1}, {1});
  ExpectStatus(Eigenvalues(GraphModel(unreached), 1, "f").status(),
               absl::StatusCode::kOk, {});
  runtime::HessianEigenvaluesCall call;
  call.model = GraphModel(unreached);
  call.args.loss = "f";
  call.args.wrt = {"x", "z"};
  call.k = 1;
  ExpectStatus(runtime_.HessianEigenvalues(ctx_, call).status(),
               absl::StatusCode::kInvalidArgument,
               {"wrt 'z'", "neither the loss"});
  call.args.wrt = {"xx"};
  ExpectStatus(runtime_.HessianEigenvalues(ctx_, call).status(),
               absl::StatusCode::kInvalidArgument,
               {"wrt 'xx'", "computed by a node"});
  for (int64_t k : {0, 3}) {
    ExpectStatus(Eigenvalues(GraphModel(g), k, "f").status(),
                 absl::StatusCode::kInvalidArgument,
                 {absl::StrCat("k = ", k), "n = 2"});
  }
  runtime::ModelSource onnx;
  onnx.kind = runtime::ModelSource::Kind::kOnnx;
  ExpectStatus(Eigenvalues(onnx, 1, "f").status(),
               absl::StatusCode::kInvalidArgument, {"onnx_model", "checker"});
  ExpectStatus(
      Check(SessionModel("r.0123456789abcdef0123456789abcdef")).status(),
      absl::StatusCode::kNotFound, {"r.0123456789abcdef0123456789abcdef"});
}

}  // namespace
}  // namespace gradserve
