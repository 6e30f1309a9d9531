// Backward does not recompute the forward pass: a test-only op, registered in
// this binary, counts its Forward and Backward calls. One Tape::Forward then
// two Tape::Backward(keep) run its Forward once and its Backward twice, and
// the same holds through the runtime's Forward/Backward use cases; Compute
// and TrainStep run each pass once.
#include <atomic>

#include "core/compile/graph_index.h"
#include "core/compile/program.h"
#include "core/compute.h"
#include "core/exec/tape.h"
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

std::atomic<int> forwards{0};
std::atomic<int> backwards{0};

// y = x², saving x for the backward pass (dy/dx = 2x); counts its calls.
class CountingSquareOp : public Op {
 public:
  explicit CountingSquareOp(const TensorMeta& x) { outputs_ = {x}; }

  SavedValues Saves(const std::vector<bool>&) const override {
    return {{0}, {}};
  }

  absl::Status Forward(ForwardContext& ctx) const override {
    ++forwards;
    const float* x = ctx.input(0).data<float>();
    Tensor& y = ctx.AllocateOutput(0);
    for (int64_t i = 0; i < y.num_elements(); ++i) {
      y.data<float>()[i] = x[i] * x[i];
    }
    return absl::OkStatus();
  }

  absl::Status Backward(BackwardContext& ctx) const override {
    ++backwards;
    if (!ctx.needs_grad(0)) return absl::OkStatus();
    const float* x = ctx.input(0).data<float>();
    const float* g = ctx.grad_output(0).data<float>();
    Tensor dx = Tensor::Empty(outputs_[0]);
    for (int64_t i = 0; i < dx.num_elements(); ++i) {
      dx.data<float>()[i] = g[i] * 2 * x[i];
    }
    ctx.SetGradInput(0, std::move(dx));
    return absl::OkStatus();
  }
};

OpSchema CountingSquareSchema() {
  OpSchema s;
  s.name = "TestCountingSquare";
  s.description = "y = x², counting its passes (tests only)";
  s.inputs = {{"x"}};
  s.create = [](const OpConfig& c) -> absl::StatusOr<std::unique_ptr<Op>> {
    RETURN_IF_ERROR(c.ExpectFloat(0));
    return MakeOp(std::make_unique<CountingSquareOp>(c.input(0)));
  };
  return s;
}

REGISTER_OP(CountingSquareSchema());

using testing::F32;

// L = Σ (x·W)² elementwise; dL/dW = 2 (x·W) x.
GraphDef SquareGraph() {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = F32({2, 3}, {0.5f, -1, 2, 0.25f, 3, -0.75f});
  g.nodes = {{"mul", "Mul", {"x", "W"}, {"h"}, {}},
             {"square", "TestCountingSquare", {"h"}, {"y"}, {}},
             {"loss", "Sum", {"y"}, {"L"}, {}}};
  g.outputs = {"L"};
  return g;
}

Tensor X() { return F32({2, 3}, {1, 2, -3, 4, -0.5f, 6}); }

std::vector<float> ExpectedGradW() {
  const Tensor x = X();
  const Tensor w = SquareGraph().parameters.at("W");
  std::vector<float> grad;
  for (int i = 0; i < 6; ++i) {
    const float h = x.data<float>()[i] * w.data<float>()[i];
    grad.push_back(1.0f * 2 * h * x.data<float>()[i]);
  }
  return grad;
}

void ExpectGradW(const std::map<std::string, Tensor>& gradients) {
  ASSERT_EQ(gradients.count("W"), 1u);
  const Tensor& g = gradients.at("W");
  ASSERT_EQ(g.num_elements(), 6);
  const std::vector<float> expected = ExpectedGradW();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(g.data<float>()[i], expected[i]) << i;
}

class CountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    forwards = 0;
    backwards = 0;
  }
};

std::shared_ptr<const Program> Compile(const GraphDef& g) {
  auto index = GraphIndex::Build(g, Limits{});
  EXPECT_TRUE(index.ok()) << index.status();
  ProgramRequest request;
  request.given["x"] = X().meta();
  request.loss = "L";
  auto program = Program::Compile(*index, request, Limits{});
  EXPECT_TRUE(program.ok()) << program.status();
  return *program;
}

TEST_F(CountsTest, TapeBackwardsReuseOneForward) {
  const GraphDef g = SquareGraph();
  const ValueSet values = ValuesOf(g);
  TensorMap feeds = {{"x", X()}};
  ForwardResult result;
  auto tape = Tape::Forward(Compile(g), feeds, values, RunControl{}, &result);
  ASSERT_TRUE(tape.ok()) << tape.status();
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 0);

  BackwardArgs keep;
  keep.from_loss = true;
  keep.keep = true;
  for (int i = 1; i <= 2; ++i) {
    auto gradients = (*tape)->Backward(keep, RunControl{});
    ASSERT_TRUE(gradients.ok()) << gradients.status();
    ExpectGradW(*gradients);
    EXPECT_EQ(forwards, 1) << "backward pass " << i << " ran the forward pass";
    EXPECT_EQ(backwards, i);
  }
  EXPECT_FALSE((*tape)->spent());

  BackwardArgs last;
  last.from_loss = true;
  auto gradients = (*tape)->Backward(last, RunControl{});
  ASSERT_TRUE(gradients.ok()) << gradients.status();
  ExpectGradW(*gradients);
  EXPECT_TRUE((*tape)->spent());
  EXPECT_EQ(backwards, 3);
  testing::ExpectStatus((*tape)->Backward(last, RunControl{}).status(),
                        absl::StatusCode::kFailedPrecondition, {"already"});
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 3);
}

TEST_F(CountsTest, RunIsOneForwardAndOneBackward) {
  const GraphDef g = SquareGraph();
  auto result = gradserve::Run(Compile(g), {{"x", X()}}, ValuesOf(g),
                               TensorMap{}, RunControl{});
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectGradW(result->gradients);
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 1);
}

class RuntimeCountsTest : public CountsTest {
 protected:
  runtime::ModelSource Graph() {
    runtime::ModelSource model;
    model.kind = runtime::ModelSource::Kind::kGraph;
    model.graph = SquareGraph();
    return model;
  }

  runtime::ComputePool pool_{{1, 1}, 16};
  runtime::Runtime runtime_{runtime::RuntimeOptions{}, &pool_};
  runtime::CallContext ctx_;
};

TEST_F(RuntimeCountsTest, ForwardThenBackwardsThroughTheRuntime) {
  runtime::ForwardCall forward;
  forward.model = Graph();
  forward.feeds = {{"x", X()}};
  forward.loss = "L";
  auto held = runtime_.Forward(ctx_, forward);
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_FALSE(held->activation_id.empty());
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 0);

  runtime::BackwardCall backward;
  backward.activation_id = held->activation_id;
  backward.args.from_loss = true;
  backward.args.keep = true;
  for (int i = 1; i <= 2; ++i) {
    auto gradients = runtime_.Backward(ctx_, backward);
    ASSERT_TRUE(gradients.ok()) << gradients.status();
    ExpectGradW(*gradients);
    EXPECT_EQ(forwards, 1);
    EXPECT_EQ(backwards, i);
  }
  // A refused Backward runs nothing and keeps the activation.
  runtime::BackwardCall bad = backward;
  bad.args.wrt = {"x"};
  testing::ExpectStatus(runtime_.Backward(ctx_, bad).status(),
                        absl::StatusCode::kInvalidArgument, {"wrt 'x'"});
  EXPECT_EQ(backwards, 2);
  backward.args.keep = false;
  auto gradients = runtime_.Backward(ctx_, backward);
  ASSERT_TRUE(gradients.ok()) << gradients.status();
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 3);
  EXPECT_EQ(runtime_.activations().count(), 0);
  testing::ExpectStatus(runtime_.Backward(ctx_, backward).status(),
                        absl::StatusCode::kNotFound, {held->activation_id});
  EXPECT_EQ(backwards, 3);
}

TEST_F(RuntimeCountsTest, ComputeAndTrainStepRunEachPassOnce) {
  runtime::ComputeCall compute;
  compute.model = Graph();
  compute.args.feeds = {{"x", X()}};
  compute.args.loss = "L";
  auto result = runtime_.Compute(ctx_, compute);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectGradW(result->result.gradients);
  EXPECT_EQ(forwards, 1);
  EXPECT_EQ(backwards, 1);

  runtime::CreateSessionCall create;
  create.model = Graph();
  create.optimizer = OptimizerConfig{SgdConfig{0.1}};
  auto session = runtime_.CreateSession(ctx_, create);
  ASSERT_TRUE(session.ok()) << session.status();
  runtime::TrainStepCall step;
  step.session_id = session->session_id;
  step.feeds = {{"x", X()}};
  step.loss = "L";
  for (int i = 1; i <= 3; ++i) {
    auto reply = runtime_.TrainStep(ctx_, step);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->step, i);
    EXPECT_EQ(forwards, 1 + i);
    EXPECT_EQ(backwards, 1 + i);
  }
}

}  // namespace
}  // namespace gradserve
