// ApplyStep's contract apart from torch parity (optimizer_parity_test):
// resuming from copied state, never writing inputs, clipping, zero
// gradients, and INVALID_ARGUMENT naming the culprit.
#include "core/train/optimizer.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve {
namespace {

using Tensors = std::map<std::string, Tensor>;

Tensor Random(Shape shape, std::mt19937& rng, float scale) {
  Tensor t = Tensor::Empty(DType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, scale);
  for (float& v : t.mutable_values<float>()) v = normal(rng);
  return t;
}

Tensors RandomTensors(std::mt19937& rng, float scale) {
  Tensors t;
  t["W"] = Random({5, 13}, rng, scale);
  t["b"] = Random({5}, rng, scale);
  t["s"] = Random({}, rng, scale);
  return t;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.num_bytes()) == 0;
}

void ExpectSameBits(const Tensors& got, const Tensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    ASSERT_EQ(got.count(name), 1u) << name;
    EXPECT_TRUE(SameBits(got.at(name), t)) << name;
  }
}

Tensors DeepCopy(const Tensors& tensors) {
  Tensors copy;
  for (const auto& [name, t] : tensors) copy[name] = t.Clone();
  return copy;
}

OptimizerConfig Sgd(SgdConfig sgd, double max_grad_norm = 0) {
  return {sgd, max_grad_norm};
}
OptimizerConfig Adam(AdamConfig adam, double max_grad_norm = 0) {
  return {adam, max_grad_norm};
}

std::vector<OptimizerConfig> SomeConfigs() {
  AdamConfig amsgrad;
  amsgrad.amsgrad = true;
  AdamConfig adamw;
  adamw.decoupled_weight_decay = true;
  adamw.weight_decay = 0.01;
  return {Sgd({0.1, 0.9, 0, 0.01, true}, 1.0), Sgd({0.05}), Adam(amsgrad, 0.5),
          Adam(adamw)};
}

// Steps first..last (1-based) with the seeded gradients of those steps.
struct Training {
  Tensors params;
  OptimizerState state;

  void Steps(const OptimizerConfig& config, int first, int last) {
    for (int step = first; step <= last; ++step) {
      std::mt19937 rng(step);
      const Tensors grads = RandomTensors(rng, 0.3f);
      absl::StatusOr<StepResult> r =
          ApplyStep(config, {&params, &grads, &state, step});
      ASSERT_TRUE(r.ok()) << r.status();
      params = r->parameters;
      state = r->state;
    }
  }
};

TEST(OptimizerTest, ResumingFromCopiedStateIsBitwiseTheSame) {
  for (const OptimizerConfig& config : SomeConfigs()) {
    std::mt19937 rng(99);
    const Tensors initial = RandomTensors(rng, 1.0f);
    Training straight{initial, {}};
    straight.Steps(config, 1, 20);

    Training first{initial, {}};
    first.Steps(config, 1, 10);
    Training resumed{DeepCopy(first.params), DeepCopy(first.state)};
    resumed.Steps(config, 11, 20);
    ExpectSameBits(resumed.params, straight.params);
    ExpectSameBits(resumed.state, straight.state);
    EXPECT_EQ(straight.state.size(), OptimizerStateNames(config).size() * 3);
  }
}

TEST(OptimizerTest, NeverWritesItsInputs) {
  for (const OptimizerConfig& config : SomeConfigs()) {
    std::mt19937 rng(5);
    Training run{RandomTensors(rng, 1.0f), {}};
    run.Steps(config, 1, 2);  // a state to start from
    const Tensors grads = RandomTensors(rng, 0.3f);
    const Tensors params_before = DeepCopy(run.params);
    const Tensors state_before = DeepCopy(run.state);
    const Tensors grads_before = DeepCopy(grads);
    absl::StatusOr<StepResult> r =
        ApplyStep(config, {&run.params, &grads, &run.state, 3});
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectSameBits(run.params, params_before);
    ExpectSameBits(run.state, state_before);
    ExpectSameBits(grads, grads_before);
    for (const auto& [name, t] : r->parameters) {
      EXPECT_NE(t.raw_data(), run.params.at(name).raw_data()) << name;
      EXPECT_FALSE(SameBits(t, run.params.at(name))) << name;
    }
    for (const auto& [key, t] : r->state) {
      EXPECT_NE(t.raw_data(), run.state.at(key).raw_data()) << key;
    }
  }
}

// clip_grad_norm_ by hand: gradients (3, 4) have norm 5; with max_norm 1
// each is multiplied by 1 / (5 + 1e-6) in float32. SGD with lr 1 subtracts
// the clipped gradient.
TEST(OptimizerTest, ClipsByTheTotalNorm) {
  const Tensors params = {{"a", Tensor::Scalar<float>(1.0f)},
                          {"b", Tensor::Scalar<float>(2.0f)}};
  const Tensors grads = {{"a", Tensor::Scalar<float>(3.0f)},
                         {"b", Tensor::Scalar<float>(4.0f)}};
  absl::StatusOr<StepResult> r =
      ApplyStep(Sgd({1.0}, 1.0), {&params, &grads, nullptr, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->grad_norm, 5.0);
  const float coef = 1.0f / (5.0f + 1e-6f);
  const volatile float a_step = 3.0f * coef;  // rounded, as torch's grad
  const volatile float b_step = 4.0f * coef;
  EXPECT_EQ(r->parameters.at("a").values<float>()[0], 1.0f - a_step);
  EXPECT_EQ(r->parameters.at("b").values<float>()[0], 2.0f - b_step);

  // A norm below max_grad_norm leaves the gradients alone.
  r = ApplyStep(Sgd({1.0}, 10.0), {&params, &grads, nullptr, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->parameters.at("a").values<float>()[0], -2.0f);
  EXPECT_EQ(r->parameters.at("b").values<float>()[0], -2.0f);
}

// Adam's first step: m / sqrt(v) is the gradient's sign after bias
// correction, so each parameter moves by about lr against it.
TEST(OptimizerTest, FirstAdamStepMovesByTheLearningRate) {
  std::mt19937 rng(3);
  const Tensors params = RandomTensors(rng, 1.0f);
  const Tensors grads = RandomTensors(rng, 1.0f);
  AdamConfig adam;
  adam.lr = 0.01;
  absl::StatusOr<StepResult> r =
      ApplyStep(Adam(adam), {&params, &grads, nullptr, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  for (const auto& [name, p] : params) {
    for (int64_t i = 0; i < p.num_elements(); ++i) {
      const float g = grads.at(name).values<float>()[i];
      const float moved =
          r->parameters.at(name).values<float>()[i] - p.values<float>()[i];
      EXPECT_NEAR(moved, g > 0 ? -0.01f : 0.01f, 1e-5) << name << i;
    }
  }
}

TEST(OptimizerTest, ZeroGradientsStepNormally) {
  std::mt19937 rng(4);
  const Tensors params = RandomTensors(rng, 1.0f);
  Tensors zeros;
  for (const auto& [name, p] : params) {
    zeros[name] = Tensor::Zeros(DType::kFloat32, p.shape());
  }
  for (const OptimizerConfig& config : SomeConfigs()) {
    absl::StatusOr<StepResult> r =
        ApplyStep(config, {&params, &zeros, nullptr, 1});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->grad_norm, 0.0);
    for (const auto& [name, p] : r->parameters) {
      for (float v : p.values<float>()) EXPECT_TRUE(std::isfinite(v)) << name;
    }
  }
  // Without weight decay nothing moves.
  absl::StatusOr<StepResult> r =
      ApplyStep(Adam({}, 1.0), {&params, &zeros, nullptr, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSameBits(r->parameters, params);
}

// ---- Errors ----------------------------------------------------------------

struct ConfigError {
  OptimizerConfig config;
  std::string field;  // named in the message
};

std::vector<ConfigError> BadConfigs() {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  constexpr double inf = std::numeric_limits<double>::infinity();
  auto adam = [](auto set) {
    AdamConfig c;
    set(c);
    return Adam(c);
  };
  return {
      {Sgd({}), "SGD lr"},
      {Sgd({-0.1}), "SGD lr"},
      {Sgd({nan}), "SGD lr"},
      {Sgd({inf}), "SGD lr"},
      {Sgd({0.1, -0.5}), "SGD momentum"},
      {Sgd({0.1, 0.9, -1}), "SGD dampening"},
      {Sgd({0.1, 0, 0, -0.01}), "SGD weight_decay"},
      {Sgd({0.1, 0, 0, nan}), "SGD weight_decay"},
      {Sgd({0.1, 0, 0, 0, true}), "SGD nesterov"},
      {Sgd({0.1, 0.9, 0.1, 0, true}), "SGD nesterov"},
      {adam([](AdamConfig& c) { c.lr = -1e-3; }), "Adam lr"},
      {adam([](AdamConfig& c) { c.lr = inf; }), "Adam lr"},
      {adam([](AdamConfig& c) { c.beta1 = 1; }), "Adam beta1"},
      {adam([](AdamConfig& c) { c.beta1 = -0.1; }), "Adam beta1"},
      {adam([](AdamConfig& c) { c.beta2 = 1.5; }), "Adam beta2"},
      {adam([](AdamConfig& c) { c.beta2 = nan; }), "Adam beta2"},
      {adam([](AdamConfig& c) { c.eps = -1e-8; }), "Adam eps"},
      {adam([](AdamConfig& c) { c.weight_decay = -0.01; }),
       "Adam weight_decay"},
      {adam([](AdamConfig& c) {
         c.weight_decay = -0.01;
         c.decoupled_weight_decay = true;
       }),
       "AdamW weight_decay"},
      {Sgd({0.1}, -1), "max_grad_norm"},
      {Adam({}, nan), "max_grad_norm"},
  };
}

TEST(OptimizerTest, BadConfigsNameTheField) {
  const Tensors params = {{"w", Tensor::Scalar<float>(1.0f)}};
  for (const ConfigError& bad : BadConfigs()) {
    testing::ExpectStatus(ValidateOptimizer(bad.config),
                          absl::StatusCode::kInvalidArgument, {bad.field});
    testing::ExpectStatus(
        ApplyStep(bad.config, {&params, &params, nullptr, 1}).status(),
        absl::StatusCode::kInvalidArgument, {bad.field});
  }
  for (const OptimizerConfig& good : SomeConfigs()) {
    EXPECT_TRUE(ValidateOptimizer(good).ok());
  }
  EXPECT_TRUE(ValidateOptimizer(Adam({})).ok());  // torch's defaults
}

struct StateError {
  OptimizerConfig config;
  std::string key;
  Tensor tensor;
  std::vector<std::string> parts;  // of the message
};

std::vector<StateError> BadStates() {
  const Tensor w = Tensor::Zeros(DType::kFloat32, {2, 3});
  const Tensor transposed = Tensor::Zeros(DType::kFloat32, {3, 2});
  const Tensor int64 = Tensor::Zeros(DType::kInt64, {2, 3});
  AdamConfig amsgrad;
  amsgrad.amsgrad = true;
  const OptimizerConfig momentum = Sgd({0.1, 0.9});
  return {
      {Adam({}), "W/exp_avg", transposed, {"'W/exp_avg'", "[2, 3]", "[3, 2]"}},
      {Adam({}), "W/exp_avg_sq", int64, {"'W/exp_avg_sq'", "float32", "int64"}},
      {Adam({}), "W/exp_avg", Tensor(), {"'W/exp_avg'", "no value"}},
      {Adam({}), "V/exp_avg", w, {"'V/exp_avg'", "'V' is not a trained"}},
      {Adam({}), "exp_avg", w, {"'exp_avg'", "expected '<parameter>/<state>'"}},
      {Adam({}),
       "W/max_exp_avg_sq",
       w,
       {"'W/max_exp_avg_sq'", "exp_avg, exp_avg_sq", "Adam"}},
      {Adam({}), "W/momentum_buffer", w, {"'W/momentum_buffer'", "exp_avg"}},
      {Adam(amsgrad), "W/step", w, {"'W/step'", "max_exp_avg_sq"}},
      {momentum, "W/exp_avg", w, {"'W/exp_avg'", "momentum_buffer"}},
      {momentum,
       "W/momentum_buffer",
       transposed,
       {"'W/momentum_buffer'", "[2, 3]"}},
      {Sgd({0.1}),
       "W/momentum_buffer",
       w,
       {"'W/momentum_buffer'", "SGD without momentum keeps no state"}},
  };
}

TEST(OptimizerTest, BadStateNamesTheKey) {
  const Tensors params = {{"W", Tensor::Zeros(DType::kFloat32, {2, 3})}};
  const std::map<std::string, TensorMeta> metas = {
      {"W", params.at("W").meta()}};
  for (const StateError& bad : BadStates()) {
    const OptimizerState state = {{bad.key, bad.tensor}};
    testing::ExpectStatus(ValidateOptimizerState(bad.config, metas, state),
                          absl::StatusCode::kInvalidArgument, bad.parts);
    testing::ExpectStatus(
        ApplyStep(bad.config, {&params, &params, &state, 2}).status(),
        absl::StatusCode::kInvalidArgument, bad.parts);
  }
  AdamConfig amsgrad;
  amsgrad.amsgrad = true;
  const Tensor zeros = Tensor::Zeros(DType::kFloat32, {2, 3});
  EXPECT_TRUE(ValidateOptimizerState(
                  Adam(amsgrad), metas,
                  {{"W/exp_avg", zeros}, {"W/max_exp_avg_sq", zeros}})
                  .ok());  // a subset is fine
}

TEST(OptimizerTest, BadStepInputsNameTheTensor) {
  const Tensors params = {{"W", Tensor::Zeros(DType::kFloat32, {2, 3})},
                          {"b", Tensor::Zeros(DType::kFloat32, {3})}};
  const Tensors no_b = {{"W", params.at("W")}};
  const Tensors short_b = {{"W", params.at("W")},
                           {"b", Tensor::Zeros(DType::kFloat32, {2})}};
  const Tensors int_b = {{"W", params.at("W")},
                         {"b", Tensor::Zeros(DType::kInt64, {3})}};
  Tensors extra = params;
  extra["c"] = params.at("b");
  const OptimizerConfig sgd = Sgd({0.1});
  const auto code = absl::StatusCode::kInvalidArgument;
  testing::ExpectStatus(ApplyStep(sgd, {&params, &no_b, nullptr, 1}).status(),
                        code, {"no gradient for parameter 'b'"});
  testing::ExpectStatus(
      ApplyStep(sgd, {&params, &short_b, nullptr, 1}).status(), code,
      {"gradient 'b'", "[2]", "[3]"});
  testing::ExpectStatus(ApplyStep(sgd, {&params, &int_b, nullptr, 1}).status(),
                        code, {"gradient 'b'", "float32"});
  testing::ExpectStatus(ApplyStep(sgd, {&params, &extra, nullptr, 1}).status(),
                        code, {"gradient 'c'"});
  testing::ExpectStatus(ApplyStep(sgd, {&int_b, &int_b, nullptr, 1}).status(),
                        code, {"parameter 'b'", "float32"});
  testing::ExpectStatus(ApplyStep(sgd, {&params, &params, nullptr, 0}).status(),
                        code, {"step", "0"});
  testing::ExpectStatus(
      ApplyStep(sgd, {&params, &params, nullptr, 1, -0.5}).status(), code,
      {"learning_rate"});
  testing::ExpectStatus(
      ApplyStep(sgd, {&params, &params, nullptr, 1, NAN}).status(), code,
      {"learning_rate"});
  testing::ExpectStatus(ApplyStep(sgd, {&params, nullptr, nullptr, 1}).status(),
                        code, {"gradients"});
}

Tensors Widened(const Tensors& tensors) {
  Tensors wide;
  for (const auto& [name, t] : tensors)
    wide[name] = t.CastFloat(DType::kFloat64);
  return wide;
}

// A float64 parameter steps in float64, as torch.optim steps one: SGD with
// momentum and Adam written out in double, two steps (the second from the
// first's state).
TEST(OptimizerTest, Float64ParametersStepInFloat64) {
  std::mt19937 rng(3);
  const Tensors params = Widened(RandomTensors(rng, 1.0f));
  const Tensors grads1 = Widened(RandomTensors(rng, 0.5f));
  const Tensors grads2 = Widened(RandomTensors(rng, 0.5f));
  const double lr = 0.1, mu = 0.9, b1 = 0.8, b2 = 0.99, eps = 1e-6;
  for (bool adam : {false, true}) {
    AdamConfig ac;
    ac.lr = lr, ac.beta1 = b1, ac.beta2 = b2, ac.eps = eps;
    const OptimizerConfig config = adam ? Adam(ac) : Sgd({lr, mu});
    auto first = ApplyStep(config, {&params, &grads1, nullptr, 1});
    ASSERT_TRUE(first.ok()) << first.status();
    auto second =
        ApplyStep(config, {&first->parameters, &grads2, &first->state, 2});
    ASSERT_TRUE(second.ok()) << second.status();
    for (const auto& [name, p0] : params) {
      const Tensor& got = second->parameters.at(name);
      ASSERT_EQ(got.dtype(), DType::kFloat64) << name;
      for (int64_t i = 0; i < p0.num_elements(); ++i) {
        const double g1 = grads1.at(name).data<double>()[i];
        const double g2 = grads2.at(name).data<double>()[i];
        double want = p0.data<double>()[i];
        if (adam) {
          double m = 0, v = 0;
          for (int t = 1; t <= 2; ++t) {
            const double g = t == 1 ? g1 : g2;
            m = b1 * m + (1 - b1) * g;
            v = b2 * v + (1 - b2) * g * g;
            want -= lr / (1 - std::pow(b1, t)) * m /
                    (std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + eps);
          }
        } else {
          const double buf2 = mu * g1 + g2;
          want -= lr * g1 + lr * buf2;
        }
        EXPECT_NEAR(got.data<double>()[i], want, 1e-14 * (1 + std::abs(want)))
            << name << "[" << i << "] adam=" << adam;
      }
    }
    for (const auto& [key, t] : second->state) {
      EXPECT_EQ(t.dtype(), DType::kFloat64) << key;
    }
  }
}

// The total norm of float64 gradients is a float64 norm: a float32 one
// would round 1 + 1e-12 to 1.
TEST(OptimizerTest, Float64GradNormAndClippingAreFloat64) {
  const double tiny = 1e-12;
  const Tensors params = {{"w", Tensor::Zeros(DType::kFloat64, {1})}};
  const Tensors grads = {{"w", Tensor::FromValues<double>({1}, {{1 + tiny}})}};
  const OptimizerConfig sgd = Sgd({1.0}, /*max_grad_norm=*/1.0);
  auto step = ApplyStep(sgd, {&params, &grads, nullptr, 1});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->grad_norm, 1 + tiny);
  const double coef = (1 / (1 + tiny + 1e-6)) * 1.0;
  EXPECT_EQ(step->parameters.at("w").data<double>()[0], -(1 + tiny) * coef);
}

TEST(OptimizerTest, GradientAndStateMustHaveTheParametersDtype) {
  const Tensors params = {{"W", Tensor::Zeros(DType::kFloat64, {2, 3})}};
  const Tensors grads32 = {{"W", Tensor::Zeros(DType::kFloat32, {2, 3})}};
  const auto code = absl::StatusCode::kInvalidArgument;
  testing::ExpectStatus(
      ApplyStep(Sgd({0.1}), {&params, &grads32, nullptr, 1}).status(), code,
      {"gradient 'W'", "must be float64", "got float32"});
  const OptimizerState state32 = {
      {"W/momentum_buffer", Tensor::Zeros(DType::kFloat32, {2, 3})}};
  testing::ExpectStatus(
      ApplyStep(Sgd({0.1, 0.9}), {&params, &params, &state32, 2}).status(),
      code, {"'W/momentum_buffer'", "must be float64", "got float32"});
}

}  // namespace
}  // namespace gradserve
