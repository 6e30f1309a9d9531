#include "tests/core/op_test_util.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/gradcheck.h"
#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

std::vector<std::string> OutputNames(const OpCase& c) {
  std::vector<std::string> names;
  for (int j = 0; j < c.num_outputs; ++j)
    names.push_back(absl::StrCat("out", j));
  return names;
}

// Feeds, seeds and wrt for a case.
ComputeArgs CaseArgs(const OpCase& c, const GraphDef& graph) {
  ComputeArgs args;
  args.mode = c.mode;
  args.seed = c.seed;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const TestInput& in = c.inputs[i];
    if (in.name.empty()) continue;
    Tensor t = MakeInput(in, c.seed * 1000 + i);
    if (in.differentiable && IsFloating(t.dtype())) args.wrt.push_back(in.name);
    args.feeds[in.name] = std::move(t);
  }
  // Seeds need the output shapes: infer them with Describe.
  absl::flat_hash_map<std::string, TensorMeta> metas;
  for (const auto& [name, t] : args.feeds) metas[name] = t.meta();
  auto summary = Describe(graph, metas, Limits{});
  if (!summary.ok()) return args;  // the run reports the error
  const std::vector<TensorMeta>& outs = summary->nodes[0].outputs;
  std::vector<int> seeded = c.seeded_outputs;
  if (seeded.empty()) {
    for (int j = 0; j < c.num_outputs; ++j) {
      if (IsFloating(outs[j].dtype)) seeded.push_back(j);
    }
  }
  for (int j : seeded) {
    TestInput s{"seed", outs[j].shape, Init::kUniform, -1.0, 1.0};
    args.output_gradients[absl::StrCat("out", j)] =
        MakeInput(s, c.seed * 7919 + j);
  }
  if (args.output_gradients.empty()) args.wrt.clear();
  return args;
}

}  // namespace

Tensor MakeInput(const TestInput& in, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(in.lo, in.hi);
  if (in.init == Init::kLabels) {
    Tensor t = Tensor::Empty(DType::kInt64, in.shape);
    std::uniform_int_distribution<int64_t> label(0, in.classes - 1);
    for (int64_t& v : t.mutable_values<int64_t>()) v = label(rng);
    return t;
  }
  Tensor t = Tensor::Empty(DType::kFloat32, in.shape);
  float* p = t.data<float>();
  const int64_t n = t.num_elements();
  switch (in.init) {
    case Init::kUniform:
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(uniform(rng));
      break;
    case Init::kAwayFromZero:
      for (int64_t i = 0; i < n; ++i) {
        p[i] = static_cast<float>(uniform(rng) * (rng() & 1 ? 1 : -1));
      }
      break;
    case Init::kBernoulli:
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(rng() & 1);
      break;
    case Init::kProbabilities: {
      const int64_t cols = in.shape.empty() ? 1 : in.shape.back();
      std::uniform_real_distribution<double> weight(0.1, 1.0);
      for (int64_t r = 0; cols > 0 && r < n / cols; ++r) {
        double sum = 0;
        for (int64_t k = 0; k < cols; ++k) sum += p[r * cols + k] = weight(rng);
        for (int64_t k = 0; k < cols; ++k) p[r * cols + k] /= sum;
      }
      break;
    }
    case Init::kLabels:
      break;
  }
  return t;
}

GraphDef SingleOpGraph(const OpCase& c) {
  GraphDef g;
  NodeDef node;
  node.name = "node";
  node.op = c.op;
  node.attributes = c.attrs;
  for (const TestInput& in : c.inputs) {
    node.inputs.push_back(in.name);
    if (!in.name.empty()) g.inputs.push_back(in.name);
  }
  node.outputs = OutputNames(c);
  g.outputs = node.outputs;
  g.nodes.push_back(std::move(node));
  return g;
}

absl::StatusOr<RunResult> RunCase(const OpCase& c, DType float_dtype) {
  GraphDef graph = SingleOpGraph(c);
  ComputeArgs args = CaseArgs(c, graph);
  args.float_dtype = float_dtype;
  return Compute(graph, args, Limits{});
}

void ExpectGradientsCorrect(const OpCase& c) {
  SCOPED_TRACE(absl::StrCat("op ", c.op));
  GraphDef graph = SingleOpGraph(c);
  ComputeArgs args = CaseArgs(c, graph);
  GradCheckOptions options;
  options.tolerance = c.fd_tolerance;
  options.epsilon = c.fd_epsilon;
  options.max_elements = 64;
  if (!args.wrt.empty()) {
    auto checks = CheckGradients(graph, args, options, Limits{});
    ASSERT_TRUE(checks.ok()) << checks.status();
    for (const TensorGradCheck& check : *checks) {
      EXPECT_TRUE(check.passed)
          << "d/d" << check.name << "[" << check.worst_index << "]: analytic "
          << check.worst_analytic << " vs numeric " << check.worst_numeric;
      EXPECT_GT(check.checked, 0) << check.name;
    }
  }
  args.float_dtype = DType::kFloat64;
  auto exact = Compute(graph, args, Limits{});
  ASSERT_TRUE(exact.ok()) << exact.status();
  args.float_dtype = DType::kFloat32;
  auto fast = Compute(graph, args, Limits{});
  ASSERT_TRUE(fast.ok()) << fast.status();
  for (const auto& [name, t] : exact->outputs) {
    ExpectClose(fast->outputs.at(name), t, c.float32_tolerance,
                absl::StrCat("output ", name));
  }
  ASSERT_EQ(fast->gradients.size(), exact->gradients.size());
  for (const auto& [name, t] : exact->gradients) {
    ExpectClose(fast->gradients.at(name), t, c.float32_tolerance,
                absl::StrCat("gradient of ", name));
  }
  for (const auto& [name, t] : exact->buffers) {
    ExpectClose(fast->buffers.at(name), t, c.float32_tolerance,
                absl::StrCat("buffer ", name));
  }
}

void ExpectError(const OpCase& c, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  auto result = RunCase(c, DType::kFloat32);
  ASSERT_FALSE(result.ok()) << "op " << c.op << " accepted a bad case";
  ExpectStatus(result.status(), code, parts);
}

Tensor F32(Shape shape, std::vector<float> values) {
  return Tensor::FromValues<float>(std::move(shape), values);
}

Tensor I64(Shape shape, std::vector<int64_t> values) {
  return Tensor::FromValues<int64_t>(std::move(shape), values);
}

void ExpectClose(const Tensor& actual, const Tensor& expected, double tol,
                 const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  Tensor a = actual.CastFloat(DType::kFloat64);
  Tensor b = expected.CastFloat(DType::kFloat64);
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  if (a.dtype() == DType::kInt64) {
    EXPECT_EQ(a.values<int64_t>(), b.values<int64_t>()) << what;
    return;
  }
  int failures = 0;
  for (int64_t i = 0; i < a.num_elements() && failures < 5; ++i) {
    double x = a.data<double>()[i];
    double y = b.data<double>()[i];
    if (!(std::abs(x - y) <= tol * (1 + std::abs(y)))) {
      ADD_FAILURE() << what << "[" << i << "]: " << x << " vs " << y;
      ++failures;
    }
  }
}

}  // namespace gradserve::testing
