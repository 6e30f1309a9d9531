#include "tests/core/op_test_util.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/analysis/gradient_check.h"
#include "core/status_macros.h"
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

absl::string_view PlacementName(Placement p) {
  switch (p) {
    case Placement::kFeed:
      return "feed";
    case Placement::kParameter:
      return "parameter";
    case Placement::kBuffer:
      return "buffer";
  }
  return "";
}

// The shape of the case's input `name`.
Shape InputShape(const OpCase& c, const std::string& name) {
  for (const TestInput& in : c.inputs) {
    if (in.name == name) return in.shape;
  }
  return {};
}

// Exactly the names of args.wrt have gradients, of their inputs' shapes.
void ExpectGradientsOfWrt(const OpCase& c, const ComputeArgs& args,
                          const RunResult& r, const std::string& what) {
  EXPECT_EQ(r.gradients.size(), args.wrt.size()) << what;
  for (const std::string& name : args.wrt) {
    auto it = r.gradients.find(name);
    if (it == r.gradients.end()) {
      ADD_FAILURE() << what << ": no gradient for " << name;
      continue;
    }
    EXPECT_EQ(it->second.shape(), InputShape(c, name)) << what << " " << name;
  }
}

void ExpectFiniteDifferencesAgree(const OpCase& c, const GraphDef& graph,
                                  const ComputeArgs& args) {
  // |analytic - numeric| <= tol * (1 + |numeric|); the float32 path is
  // compared separately, outputs and buffers too.
  GradCheckOptions options;
  options.rtol = options.atol = c.fd_tolerance;
  options.epsilon = c.fd_epsilon;
  options.max_elements_per_tensor = c.fd_max_elements;
  options.check_float32 = false;
  auto checks = CheckGradients(graph, args, options, Limits{});
  ASSERT_TRUE(checks.ok()) << checks.status();
  for (const TensorCheck& check : checks->tensors) {
    EXPECT_TRUE(check.passed)
        << "d/d" << check.name << "[" << absl::StrJoin(check.worst_index, ", ")
        << "]: analytic " << check.analytic << " vs numeric " << check.numeric;
    if (ElementCount(InputShape(c, check.name)) > 0) {
      EXPECT_GT(check.elements_checked, 0) << check.name;
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<TensorMeta>> OutputMetas(const GraphDef& graph,
                                                    ComputeArgs args) {
  args.fetch = graph.outputs;
  args.float_dtype = DType::kFloat64;  // the loops: no primitives to build
  args.loss.clear();
  args.output_gradients.clear();
  args.wrt.clear();
  ASSIGN_OR_RETURN(RunResult r, Compute(graph, args, Limits{}));
  std::vector<TensorMeta> metas;
  for (const std::string& name : graph.outputs) {
    TensorMeta meta = r.outputs.at(name).meta();
    if (IsFloating(meta.dtype)) meta.dtype = DType::kFloat32;
    metas.push_back(std::move(meta));
  }
  return metas;
}

ComputeArgs CaseArgs(const OpCase& c, const GraphDef& graph) {
  ComputeArgs args;
  args.mode = c.mode;
  args.seed = c.seed;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const TestInput& in = c.inputs[i];
    if (in.name.empty()) continue;
    Tensor t = CaseInput(c, i);
    if (in.differentiable && IsFloating(t.dtype())) args.wrt.push_back(in.name);
    if (in.placement == Placement::kFeed) args.feeds[in.name] = std::move(t);
  }
  // Seeds need the output shapes.
  auto outputs = OutputMetas(graph, args);
  if (!outputs.ok()) return args;  // the run reports the error
  const std::vector<TensorMeta>& outs = *outputs;
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

Tensor CaseInput(const OpCase& c, size_t i) {
  return MakeInput(c.inputs[i], c.seed * 1000 + i);
}

GraphDef SingleOpGraph(const OpCase& c) {
  GraphDef g;
  NodeDef node;
  node.name = "node";
  node.op = c.op;
  node.attributes = c.attrs;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const TestInput& in = c.inputs[i];
    node.inputs.push_back(in.name);
    if (in.name.empty()) continue;
    switch (in.placement) {
      case Placement::kFeed:
        g.inputs.push_back(in.name);
        break;
      case Placement::kParameter:
        g.parameters[in.name] = CaseInput(c, i);
        break;
      case Placement::kBuffer:
        g.buffers[in.name] = CaseInput(c, i);
        break;
    }
  }
  node.outputs = OutputNames(c);
  g.outputs = node.outputs;
  g.nodes.push_back(std::move(node));
  return g;
}

OpCase Placed(OpCase c, Placements p) {
  const Placement cycle[] = {Placement::kFeed, Placement::kParameter,
                             Placement::kBuffer};
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    TestInput& in = c.inputs[i];
    switch (p) {
      case Placements::kAllFeeds:
        in.placement = Placement::kFeed;
        break;
      case Placements::kAllParameters:
        in.placement = Placement::kParameter;
        break;
      case Placements::kMixed:
      case Placements::kMixedRotated:
        in.placement = cycle[(i + (p == Placements::kMixed ? 0 : 1)) % 3];
        break;
    }
    // Parameters are trainable floats; labels stay with the data.
    if (in.init == Init::kLabels && in.placement == Placement::kParameter) {
      in.placement = p == Placements::kAllParameters ? Placement::kBuffer
                                                     : Placement::kFeed;
    }
  }
  return c;
}

std::vector<int> FloatInputs(const OpCase& c) {
  std::vector<int> floats;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (!c.inputs[i].name.empty() && c.inputs[i].init != Init::kLabels) {
      floats.push_back(static_cast<int>(i));
    }
  }
  return floats;
}

OpCase WithWrt(OpCase c, const std::vector<int>& subset) {
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    c.inputs[i].differentiable =
        std::find(subset.begin(), subset.end(), i) != subset.end();
  }
  return c;
}

std::vector<std::vector<int>> NonEmptySubsets(const std::vector<int>& inputs) {
  std::vector<std::vector<int>> subsets;
  for (uint32_t bits = 1; bits < (1u << inputs.size()); ++bits) {
    std::vector<int> subset;
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (bits & (1u << k)) subset.push_back(inputs[k]);
    }
    subsets.push_back(std::move(subset));
  }
  return subsets;
}

std::string CaseName(const OpCase& c) {
  std::vector<std::string> inputs, wrt, placed;
  for (const TestInput& in : c.inputs) {
    inputs.push_back(in.name.empty() ? "\"\"" : in.name);
    if (in.name.empty()) continue;
    if (in.differentiable && in.init != Init::kLabels) wrt.push_back(in.name);
    placed.push_back(absl::StrCat(in.name, ":", PlacementName(in.placement)));
  }
  return absl::StrCat(c.op, "(", absl::StrJoin(inputs, ", "), ") ",
                      c.mode == Mode::kTrain ? "TRAIN" : "EVAL", " wrt {",
                      absl::StrJoin(wrt, ", "), "}, ",
                      absl::StrJoin(placed, " "));
}

absl::StatusOr<RunResult> RunCase(const OpCase& c, DType float_dtype,
                                  const Limits& limits) {
  GraphDef graph = SingleOpGraph(c);
  ComputeArgs args = CaseArgs(c, graph);
  args.float_dtype = float_dtype;
  return Compute(graph, args, limits);
}

ComputeArgs ValueArgs(const OpCase& c, std::vector<Tensor> values, Tensor seed,
                      DType float_dtype) {
  ComputeArgs args;
  args.float_dtype = float_dtype;
  args.mode = c.mode;
  args.seed = c.seed;
  for (size_t i = 0; i < c.inputs.size() && i < values.size(); ++i) {
    if (!c.inputs[i].name.empty()) {
      args.feeds[c.inputs[i].name] = std::move(values[i]);
    }
  }
  if (seed.defined()) args.output_gradients["out0"] = std::move(seed);
  return args;
}

absl::StatusOr<RunResult> RunPlaced(const OpCase& c, std::vector<Tensor> values,
                                    Tensor seed, DType float_dtype) {
  return Compute(SingleOpGraph(c),
                 ValueArgs(c, std::move(values), std::move(seed), float_dtype),
                 Limits{});
}

void ExpectGradientsCorrect(const OpCase& c) {
  SCOPED_TRACE(CaseName(c));
  GraphDef graph = SingleOpGraph(c);
  ComputeArgs args = CaseArgs(c, graph);
  if (!args.wrt.empty()) ExpectFiniteDifferencesAgree(c, graph, args);
  args.float_dtype = DType::kFloat64;
  auto exact = Compute(graph, args, Limits{});
  ASSERT_TRUE(exact.ok()) << exact.status();
  ExpectGradientsOfWrt(c, args, *exact, "float64");
  args.float_dtype = DType::kFloat32;
  auto fast = Compute(graph, args, Limits{});
  ASSERT_TRUE(fast.ok()) << fast.status();
  ExpectGradientsOfWrt(c, args, *fast, "float32");
  for (const auto& [name, t] : exact->outputs) {
    ExpectClose(fast->outputs.at(name), t, c.float32_tolerance,
                absl::StrCat("output ", name));
  }
  for (const auto& [name, t] : exact->gradients) {
    ASSERT_EQ(fast->gradients.count(name), 1u) << name;
    ExpectClose(fast->gradients.at(name), t, c.float32_tolerance,
                absl::StrCat("gradient of ", name));
  }
  ASSERT_EQ(fast->buffers.size(), exact->buffers.size());
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

NodeDef Node(std::string name, std::string op, std::vector<std::string> inputs,
             std::string output, AttrMap attrs) {
  NodeDef n;
  n.name = std::move(name);
  n.op = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = {std::move(output)};
  n.attributes = std::move(attrs);
  return n;
}

Tensor Uniform(Shape shape, uint64_t seed, double lo, double hi) {
  return MakeInput(TestInput{"t", std::move(shape), Init::kUniform, lo, hi},
                   seed);
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
