// core/analysis: eigenvalues (dense and Lanczos) of operators with known
// spectra, the critical-point verdicts, Hessians of functions with known
// answers (saddle, minimum, maximum, degenerate, quadratics with chosen
// eigenvalues on the exact and the Lanczos path), gradient checks over every
// registered op, and diagnostics (dead units, saturation, vanishing
// gradients, non-finite values).
#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_join.h"
#include "core/analysis/diagnostics.h"
#include "core/analysis/gradient_check.h"
#include "core/analysis/hessian.h"
#include "core/analysis/spectrum.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"
#include "tests/core/op_sweep_cases.h"
#include "tests/core/op_test_util.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

// A random orthogonal n×n matrix (Gram-Schmidt of normal columns).
std::vector<double> RandomOrthogonal(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> q(n * n);
  for (int64_t c = 0; c < n; ++c) {
    std::vector<double> v(n);
    for (double& x : v) x = normal(rng);
    for (int64_t p = 0; p < c; ++p) {
      double dot = 0;
      for (int64_t r = 0; r < n; ++r) dot += q[r * n + p] * v[r];
      for (int64_t r = 0; r < n; ++r) v[r] -= dot * q[r * n + p];
    }
    double norm = 0;
    for (double x : v) norm += x * x;
    for (int64_t r = 0; r < n; ++r) q[r * n + c] = v[r] / std::sqrt(norm);
  }
  return q;
}

// Q diag(lambda) Qᵀ, row-major.
std::vector<double> WithEigenvalues(const std::vector<double>& lambda,
                                    uint64_t seed) {
  const int64_t n = static_cast<int64_t>(lambda.size());
  const std::vector<double> q = RandomOrthogonal(n, seed);
  std::vector<double> a(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k < n; ++k) {
        a[i * n + j] += q[i * n + k] * lambda[k] * q[j * n + k];
      }
    }
  }
  return a;
}

void ExpectNear(const std::vector<double>& actual,
                const std::vector<double>& expected, double tol,
                const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], tol * (1 + std::abs(expected[i])))
        << what << "[" << i << "]";
  }
}

TEST(Spectrum, DenseEigenvaluesOfAChosenSpectrum) {
  const std::vector<double> lambda = {-3, -1, 0.5, 2, 4, 7};
  ExpectNear(SymmetricEigenvalues(WithEigenvalues(lambda, 3), 6), lambda, 1e-12,
             "eigenvalues");
}

// A diagonal operator: a bulk in [1, 2] and three eigenvalues beyond each
// end of it.
std::vector<double> OutlierSpectrum(int64_t n) {
  std::vector<double> d(n);
  for (int64_t i = 0; i < n; ++i) d[i] = 1 + static_cast<double>(i) / n;
  const double outliers[] = {10, 8, 6, -5, -3, -1.5};
  for (int i = 0; i < 6; ++i) d[(i * 997 + 13) % n] = outliers[i];
  return d;
}

LinearOperator Diagonal(const std::vector<double>& d) {
  return [&d](absl::Span<const double> x, absl::Span<double> y) {
    for (size_t i = 0; i < d.size(); ++i) y[i] = d[i] * x[i];
    return absl::OkStatus();
  };
}

TEST(Spectrum, LanczosFindsBothEndsOfALargeOperator) {
  const std::vector<double> d = OutlierSpectrum(5000);
  LanczosOptions options;
  options.k = 3;
  auto r = Lanczos(5000, Diagonal(d), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  EXPECT_LT(r->iterations, 300);
  ExpectNear(r->largest, {10, 8, 6}, 1e-9, "largest");
  ExpectNear(r->smallest, {-5, -3, -1.5}, 1e-9, "smallest");
}

TEST(Spectrum, LanczosRestartsAfterAnInvariantSubspace) {
  // Three distinct eigenvalues: the Krylov space is exhausted after three
  // steps, and fresh directions find the repeated zero.
  std::vector<double> d(5000, 0.0);
  d[10] = 5;
  d[20] = -2;
  LanczosOptions options;
  options.k = 2;
  auto r = Lanczos(5000, Diagonal(d), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  ExpectNear(r->largest, {5, 0}, 1e-9, "largest");
  ExpectNear(r->smallest, {-2, 0}, 1e-9, "smallest");
}

TEST(CriticalPoint, FollowsTheRulesOfTheApi) {
  struct Row {
    std::vector<double> eigenvalues;
    double gradient_norm, loss;
    std::string verdict;
  };
  const Row rows[] = {
      {{1, 2, 3}, 0, 0, "minimum"},        {{-1, -2}, 1e-9, 5, "maximum"},
      {{-1, 2}, 0, 0, "saddle"},           {{0, 2}, 0, 0, "degenerate"},
      {{1e-7, 2}, 0, 0, "degenerate"},  // |λ| <= 1e-6 · max|λ| is zero
      {{-1e-7, 0, 2}, 0, 0, "degenerate"}, {{-1e-7, -1, 2}, 0, 0, "saddle"},
      {{1, 2}, 2e-5, 1, "not critical"},  // > 1e-5 · max(1, |loss|)
      {{1, 2}, 2e-5, 10, "minimum"},      // <= 1e-5 · |loss|
      {{0, 0}, 0, 0, "degenerate"},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(CriticalPoint(row.eigenvalues, row.gradient_norm, row.loss),
              row.verdict)
        << absl::StrJoin(row.eigenvalues, ", ");
  }
}

// f(x, y) from products and differences of two scalar parameters.
struct TwoParameterFunction {
  GraphDef graph;
  ComputeArgs args;
};

TwoParameterFunction XY(float x, float y, const std::string& f) {
  TwoParameterFunction t;
  GraphDef& g = t.graph;
  g.parameters["x"] = F32({1}, {x});
  g.parameters["y"] = F32({1}, {y});
  g.nodes = {Node("xx", "Mul", {"x", "x"}, "xx"),
             Node("yy", "Mul", {"y", "y"}, "yy")};
  if (f == "x2-y2") {
    g.nodes.push_back(Node("f", "Sub", {"xx", "yy"}, "f"));
  } else if (f == "x2+y2") {
    g.nodes.push_back(Node("f", "Add", {"xx", "yy"}, "f"));
  } else if (f == "-x2-y2") {
    g.nodes.push_back(Node("sum", "Add", {"xx", "yy"}, "s"));
    g.nodes.push_back(Node("f", "Scale", {"s"}, "f", {{"factor", -1.0}}));
  } else {  // x2+y4
    g.nodes.push_back(Node("y4", "Mul", {"yy", "yy"}, "y4"));
    g.nodes.push_back(Node("f", "Add", {"xx", "y4"}, "f"));
  }
  t.args.loss = "f";
  return t;
}

absl::StatusOr<HessianSpectrum> Spectrum(const GraphDef& g,
                                         const ComputeArgs& args, int64_t k) {
  ASSIGN_OR_RETURN(Objective objective, Objective::Make(g, args, Limits{}));
  ASSIGN_OR_RETURN(SpectrumPlan plan,
                   PlanSpectrum(objective.dimension(), k, Limits{}));
  return HessianEigenvalues(objective, plan);
}

TEST(Hessian, VerdictsOfSmallFunctions) {
  struct Row {
    std::string f;
    float x, y;
    std::vector<double> ascending;
    std::string verdict;
  };
  const Row rows[] = {
      {"x2-y2", 0, 0, {-2, 2}, "saddle"},
      {"x2+y2", 0, 0, {2, 2}, "minimum"},
      {"-x2-y2", 0, 0, {-2, -2}, "maximum"},
      {"x2+y4", 0, 0, {0, 2}, "degenerate"},
      {"x2-y2", 1, 0.5f, {-2, 2}, "not critical"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.f);
    TwoParameterFunction t = XY(row.x, row.y, row.f);
    auto s = Spectrum(t.graph, t.args, 2);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(s->exact);
    ExpectNear(s->smallest, row.ascending, 1e-8, "smallest");
    EXPECT_EQ(s->critical_point, row.verdict);
  }
  TwoParameterFunction at = XY(1, 0.5f, "x2-y2");
  auto s = Spectrum(at.graph, at.args, 1);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->gradient_norm, std::sqrt(4 + 1), 1e-12);
  EXPECT_NEAR(s->loss, 0.75, 1e-12);
}

// L = ½ θ A θᵀ with θ [1, n] a parameter and A a buffer: H = A.
GraphDef Quadratic(const std::vector<double>& a, int64_t n) {
  GraphDef g;
  std::vector<float> a32(a.begin(), a.end());
  g.buffers["A"] = F32({n, n}, a32);
  g.parameters["theta"] = Uniform({1, n}, 5, -1, 1);
  g.nodes = {Node("u", "MatMul", {"theta", "A"}, "u"),
             Node("p", "Mul", {"u", "theta"}, "p"),
             Node("s", "Sum", {"p"}, "s"),
             Node("L", "Scale", {"s"}, "L", {{"factor", 0.5}})};
  return g;
}

TEST(Hessian, QuadraticWithChosenEigenvaluesOnTheExactPath) {
  const std::vector<double> lambda = {-3, -1, 0.5, 2, 4, 7};
  const std::vector<double> a = WithEigenvalues(lambda, 11);
  ComputeArgs args;
  args.loss = "L";
  auto s = Spectrum(Quadratic(a, 6), args, 6);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->exact);
  EXPECT_EQ(s->iterations, 0);
  // A is sent as float32: its eigenvalues move by ~1e-7.
  ExpectNear(s->smallest, lambda, 1e-6, "smallest");
  std::vector<double> descending(lambda.rbegin(), lambda.rend());
  ExpectNear(s->largest, descending, 1e-6, "largest");
}

TEST(Hessian, VectorProductOfAQuadraticIsAv) {
  const int64_t n = 6;
  const std::vector<double> a = WithEigenvalues({-3, -1, 0.5, 2, 4, 7}, 11);
  ComputeArgs args;
  args.loss = "L";
  auto objective = Objective::Make(Quadratic(a, n), args, Limits{});
  ASSERT_TRUE(objective.ok()) << objective.status();
  TensorMap vector;
  vector["theta"] = Uniform({1, n}, 9, -2, 2);
  auto product = HessianVectorProduct(*objective, vector);
  ASSERT_TRUE(product.ok()) << product.status();
  const Tensor v = vector["theta"].CastFloat(DType::kFloat64);
  const Tensor hv = product->at("theta").CastFloat(DType::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    double expected = 0;
    for (int64_t j = 0; j < n; ++j) {
      expected += static_cast<double>(static_cast<float>(a[i * n + j])) *
                  v.data<double>()[j];
    }
    EXPECT_NEAR(hv.data<double>()[i], expected, 1e-6 * (1 + std::abs(expected)))
        << i;
  }
}

TEST(Hessian, DiagonalQuadraticAbove4096GoesToLanczos) {
  const int64_t n = 5000;
  const std::vector<double> d = OutlierSpectrum(n);
  GraphDef g;
  g.buffers["d"] = F32({n}, std::vector<float>(d.begin(), d.end()));
  g.parameters["theta"] = Uniform({n}, 3, -1, 1);
  g.nodes = {Node("sq", "Mul", {"theta", "theta"}, "sq"),
             Node("w", "Mul", {"sq", "d"}, "w"), Node("s", "Sum", {"w"}, "s"),
             Node("L", "Scale", {"s"}, "L", {{"factor", 0.5}})};
  ComputeArgs args;
  args.loss = "L";
  auto s = Spectrum(g, args, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->exact);
  EXPECT_TRUE(s->converged);
  EXPECT_GT(s->iterations, 0);
  ExpectNear(s->largest, {10, 8, 6}, 1e-7, "largest");
  ExpectNear(s->smallest, {-5, -3, -1.5}, 1e-7, "smallest");
  EXPECT_EQ(s->critical_point, "not critical");
}

TEST(Hessian, PlansRefuseBadKAndHugeWorkSpaces) {
  ExpectStatus(PlanSpectrum(2, 0, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"k = 0", "n = 2"});
  ExpectStatus(PlanSpectrum(2, 3, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"k = 3", "n = 2"});
  auto exact = PlanSpectrum(kMaxExactHessian, 1, Limits{});
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact->exact);
  auto lanczos = PlanSpectrum(kMaxExactHessian + 1, 1, Limits{});
  ASSERT_TRUE(lanczos.ok());
  EXPECT_FALSE(lanczos->exact);
  EXPECT_EQ(lanczos->lanczos_iterations, 302);
  Limits small;
  small.max_request_bytes = int64_t{1} << 20;
  ExpectStatus(PlanSpectrum(1000, 1, small).status(),
               absl::StatusCode::kResourceExhausted,
               {"n = 1000", "whole Hessian", "1048576"});
  ExpectStatus(PlanSpectrum(10'000, 1, small).status(),
               absl::StatusCode::kResourceExhausted,
               {"n = 10000", "Lanczos basis"});
  // A basis of fewer vectors where that is what fits.
  small.max_request_bytes = int64_t{1} << 24;
  auto fitted = PlanSpectrum(10'000, 1, small);
  ASSERT_TRUE(fitted.ok()) << fitted.status();
  EXPECT_EQ(fitted->lanczos_iterations, (int64_t{1} << 24) / 80'000);
  EXPECT_LE(fitted->bytes, small.max_request_bytes);
}

GradCheckOptions Sampled(int64_t elements) {
  GradCheckOptions options;
  options.max_elements_per_tensor = elements;
  return options;
}

TEST(CheckGradients, PassesOnEveryRegisteredOp) {
  size_t checked = 0;
  for (const std::string& op : RegisteredOps()) {
    SCOPED_TRACE(op);
    auto cases = SweepCases().find(op);
    ASSERT_NE(cases, SweepCases().end()) << "no sweep case for " << op;
    for (const OpCase& c : cases->second) {
      const OpCase placed = Placed(c, Placements::kMixed);
      SCOPED_TRACE(CaseName(placed));
      const GraphDef graph = SingleOpGraph(placed);
      const ComputeArgs args = CaseArgs(placed, graph);
      if (args.wrt.empty()) continue;
      auto check = CheckGradients(graph, args, Sampled(16), Limits{});
      ASSERT_TRUE(check.ok()) << check.status();
      ++checked;
      for (const TensorCheck& t : check->tensors) {
        EXPECT_TRUE(t.passed)
            << t.name << "[" << absl::StrJoin(t.worst_index, ", ")
            << "]: analytic " << t.analytic << " vs numeric " << t.numeric
            << "; float32 " << t.float32_value << " at ["
            << absl::StrJoin(t.float32_worst_index, ", ") << "]";
        EXPECT_GT(t.elements_checked, 0);
      }
    }
  }
  EXPECT_GE(checked, RegisteredOps().size());
}

// y = ReLU(x) seeded with ones, x with an exact zero at [1, 2]: autograd
// says 0 there, the central difference 0.5.
TEST(CheckGradients, FailsAtAKinkNamingTheElement) {
  GraphDef g;
  g.inputs = {"x"};
  g.nodes = {Node("relu", "ReLU", {"x"}, "y")};
  ComputeArgs args;
  args.feeds["x"] = F32({2, 3}, {1, -1, 2, 0.5f, -2, 0});
  args.output_gradients["y"] = F32({2, 3}, {1, 1, 1, 1, 1, 1});
  args.wrt = {"x"};
  auto check = CheckGradients(g, args, GradCheckOptions{}, Limits{});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->passed);
  ASSERT_EQ(check->tensors.size(), 1u);
  const TensorCheck& t = check->tensors[0];
  EXPECT_EQ(t.name, "x");
  EXPECT_EQ(t.elements_checked, 6);
  EXPECT_FALSE(t.numeric_passed);
  EXPECT_TRUE(t.float32_passed);
  EXPECT_EQ(t.worst_index, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(t.analytic, 0);
  EXPECT_NEAR(t.numeric, 0.5, 1e-9);
  EXPECT_NEAR(t.max_abs_error, 0.5, 1e-9);
}

TEST(CheckGradients, SamplesASeededSubsetOfEachTensor) {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = Uniform({6, 8}, 1);
  g.nodes = {Node("fc", "Linear", {"x", "W", ""}, "y"),
             Node("t", "Tanh", {"y"}, "h"), Node("s", "Sum", {"h"}, "L")};
  ComputeArgs args;
  args.feeds["x"] = Uniform({4, 8}, 2, -1, 1);
  args.loss = "L";
  args.wrt = {"W", "x"};
  args.seed = 3;
  auto a = CheckGradients(g, args, Sampled(5), Limits{});
  auto b = CheckGradients(g, args, Sampled(5), Limits{});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->passed);
  ASSERT_EQ(a->tensors.size(), 2u);
  EXPECT_EQ(a->tensors[0].name, "W");
  EXPECT_EQ(a->tensors[1].name, "x");
  for (size_t t = 0; t < 2; ++t) {
    EXPECT_EQ(a->tensors[t].elements_checked, 5);
    EXPECT_EQ(a->tensors[t].worst_index, b->tensors[t].worst_index);
    EXPECT_EQ(a->tensors[t].max_abs_error, b->tensors[t].max_abs_error);
  }
  auto all = CheckGradients(g, args, GradCheckOptions{}, Limits{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->tensors[0].elements_checked, 48);
}

TEST(CheckGradients, TrainModeHoldsDropoutMasksFixed) {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = Uniform({5, 6}, 1);
  g.nodes = {Node("drop", "Dropout", {"x", ""}, "d", {{"p", 0.5}}),
             Node("fc", "Linear", {"d", "W", ""}, "y"),
             Node("sq", "Mul", {"y", "y"}, "y2"),
             Node("s", "Sum", {"y2"}, "L")};
  ComputeArgs args;
  args.feeds["x"] = Uniform({4, 6}, 2, -1, 1);
  args.loss = "L";
  args.wrt = {"W", "x"};
  args.seed = 17;
  auto check = CheckGradients(g, args, GradCheckOptions{}, Limits{});
  ASSERT_TRUE(check.ok()) << check.status();
  for (const TensorCheck& t : check->tensors) {
    EXPECT_TRUE(t.passed) << t.name << " " << t.analytic << " vs " << t.numeric;
  }
}

TEST(CheckGradients, RefusesBadTolerances) {
  TwoParameterFunction t = XY(1, 2, "x2+y2");
  GradCheckOptions options;
  options.epsilon = -1;
  ExpectStatus(CheckGradients(t.graph, t.args, options, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"epsilon", "-1"});
  options = GradCheckOptions{};
  options.rtol = -1e-3;
  ExpectStatus(CheckGradients(t.graph, t.args, options, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"rtol"});
  options = GradCheckOptions{};
  options.max_elements_per_tensor = -2;
  ExpectStatus(CheckGradients(t.graph, t.args, options, Limits{}).status(),
               absl::StatusCode::kInvalidArgument, {"max_elements_per_tensor"});
}

// Runs g with a DiagnosticsRecorder.
Diagnostics Diagnose(const GraphDef& g, const ComputeArgs& args,
                     RunResult* result = nullptr) {
  auto index = GraphIndex::Build(g, Limits{});
  EXPECT_TRUE(index.ok()) << index.status();
  auto program = Program::Compile(*index, ProgramRequestFor(args), Limits{});
  EXPECT_TRUE(program.ok()) << program.status();
  DiagnosticsRecorder recorder;
  RunControl control{args.seed, nullptr, &recorder};
  auto run =
      Run(*program, args.feeds, ValuesOf(g), args.output_gradients, control);
  EXPECT_TRUE(run.ok()) << run.status();
  if (result != nullptr) *result = *run;
  return recorder.Finish(run->gradients);
}

const ValueDiagnostics* Find(const Diagnostics& d, const std::string& value) {
  for (const ValueDiagnostics& v : d.values) {
    if (v.value == value) return &v;
  }
  ADD_FAILURE() << "no diagnostics for " << value;
  return nullptr;
}

bool Warned(const Diagnostics& d, const std::vector<std::string>& parts) {
  return std::any_of(
      d.warnings.begin(), d.warnings.end(), [&](const std::string& w) {
        return std::all_of(parts.begin(), parts.end(), [&](const auto& p) {
          return w.find(p) != std::string::npos;
        });
      });
}

// x [64, 8] -> Linear 16 with bias -10 (-> BatchNorm) -> ReLU -> Sum.
GraphDef BiasedRelu(bool batch_norm) {
  GraphDef g;
  g.inputs = {"x"};
  g.parameters["W"] = Uniform({16, 8}, 1, -0.3, 0.3);
  g.parameters["b"] = F32({16}, std::vector<float>(16, -10));
  g.nodes = {Node("fc", "Linear", {"x", "W", "b"}, "h")};
  std::string pre = "h";
  if (batch_norm) {
    g.parameters["bn.w"] = F32({16}, std::vector<float>(16, 1));
    g.parameters["bn.b"] = F32({16}, std::vector<float>(16, 0));
    g.buffers["bn.rm"] = F32({16}, std::vector<float>(16, 0));
    g.buffers["bn.rv"] = F32({16}, std::vector<float>(16, 1));
    g.nodes.push_back(
        Node("bn", "BatchNorm", {"h", "bn.w", "bn.b", "bn.rm", "bn.rv"}, "n"));
    pre = "n";
  }
  g.nodes.push_back(Node("relu", "ReLU", {pre}, "a"));
  g.nodes.push_back(Node("sum", "Sum", {"a"}, "L"));
  return g;
}

TEST(Diagnostics, DeadReluFlaggedAndBatchNormBeforeItClearsIt) {
  ComputeArgs args;
  args.feeds["x"] = Uniform({64, 8}, 2, -1, 1);
  args.loss = "L";
  const Diagnostics dead = Diagnose(BiasedRelu(false), args);
  ASSERT_NE(Find(dead, "a"), nullptr);
  EXPECT_EQ(Find(dead, "a")->dead_fraction, 1.0);
  EXPECT_EQ(Find(dead, "a")->zero_fraction, 1.0);
  EXPECT_EQ(Find(dead, "h")->dead_fraction, 0.0);  // not ReLU-like
  EXPECT_TRUE(Warned(dead, {"node 'relu'", "100%", "dead"}))
      << absl::StrJoin(dead.warnings, "\n");
  const Diagnostics alive = Diagnose(BiasedRelu(true), args);
  ASSERT_NE(Find(alive, "a"), nullptr);
  EXPECT_EQ(Find(alive, "a")->dead_fraction, 0.0);
  EXPECT_FALSE(Warned(alive, {"dead"})) << absl::StrJoin(alive.warnings, "\n");
}

// Ten Linear layers of width 32 (He-initialised), each followed by `act`.
GraphDef DeepMlp(const std::string& act) {
  GraphDef g;
  g.inputs = {"x"};
  std::string in = "x";
  for (int l = 0; l < 10; ++l) {
    const std::string w = absl::StrCat("W", l), b = absl::StrCat("b", l);
    const double bound = std::sqrt(6.0 / 32);
    g.parameters[w] = Uniform({32, 32}, 100 + l, -bound, bound);
    g.parameters[b] = F32({32}, std::vector<float>(32, 0));
    g.nodes.push_back(Node(absl::StrCat("fc", l), "Linear", {in, w, b},
                           absl::StrCat("h", l)));
    g.nodes.push_back(Node(absl::StrCat("act", l), act, {absl::StrCat("h", l)},
                           absl::StrCat("a", l)));
    in = absl::StrCat("a", l);
  }
  g.nodes.push_back(Node("mse", "MSELoss", {in, "t"}, "L"));
  g.inputs.push_back("t");
  return g;
}

TEST(Diagnostics, DeepSigmoidMlpVanishesAndTheReluOneDoesNot) {
  ComputeArgs args;
  args.feeds["x"] = Uniform({16, 32}, 1, -1, 1);
  args.feeds["t"] = Uniform({16, 32}, 2, 0, 1);
  args.loss = "L";
  RunResult run;
  const Diagnostics sigmoid = Diagnose(DeepMlp("Sigmoid"), args, &run);
  EXPECT_TRUE(Warned(sigmoid, {"'fc0'", "'fc9'", "vanishing"}))
      << absl::StrJoin(sigmoid.warnings, "\n");
  ASSERT_EQ(sigmoid.parameter_grad_norms.size(), 20u);
  double squares = 0;
  for (float g : run.gradients.at("W3").values<float>()) squares += g * g;
  EXPECT_NEAR(sigmoid.parameter_grad_norms.at("W3"), std::sqrt(squares),
              1e-6 * std::sqrt(squares));
  const Diagnostics relu = Diagnose(DeepMlp("ReLU"), args);
  EXPECT_FALSE(Warned(relu, {"vanishing"}))
      << absl::StrJoin(relu.warnings, "\n");
}

TEST(Diagnostics, StatisticsSaturationAndTheFirstNonFiniteNode) {
  GraphDef g;
  g.inputs = {"x"};
  g.nodes = {Node("sig", "Sigmoid", {"x"}, "s"),
             Node("relu", "ReLU", {"x"}, "r"), Node("log", "Log", {"x"}, "l"),
             Node("exp", "Exp", {"l"}, "e"), Node("sum", "Sum", {"e"}, "L")};
  ComputeArgs args;
  args.feeds["x"] = F32({2, 3}, {-20, 20, 30, 0, 1, -1});
  args.fetch = {"s", "r"};
  args.loss = "L";
  args.wrt = {"x"};
  const Diagnostics d = Diagnose(g, args);
  const ValueDiagnostics* s = Find(d, "s");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->node, "sig");
  EXPECT_EQ(s->op, "Sigmoid");
  EXPECT_NEAR(s->saturated_fraction, 0.5, 1e-12);
  EXPECT_TRUE(Warned(d, {"node 'sig'", "50%", "saturated"}));
  // log(x): -inf at 0, NaN at -20 and -1; exp(l) then has the NaNs.
  const ValueDiagnostics* l = Find(d, "l");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->non_finite, 3);
  EXPECT_NEAR(l->mean, (std::log(20.0) + std::log(30.0)) / 3, 1e-5);
  const double m = l->mean;
  const double var = (std::pow(std::log(20.0) - m, 2) +
                      std::pow(std::log(30.0) - m, 2) + m * m) /
                     3;
  EXPECT_NEAR(l->std, std::sqrt(var), 1e-5);
  EXPECT_NEAR(Find(d, "r")->zero_fraction, 0.5, 1e-12);
  EXPECT_EQ(Find(d, "r")->non_finite, 0);
  EXPECT_EQ(Find(d, "e")->non_finite, 2);
  EXPECT_EQ(d.first_non_finite_node, "log");
  EXPECT_TRUE(Warned(d, {"node 'log' (Log)", "first non-finite", "3 NaN"}));
}

TEST(Diagnostics, GradientNormOfEveryValueAndResultsUnchanged) {
  const GraphDef g = DeepMlp("Tanh");
  ComputeArgs args;
  args.feeds["x"] = Uniform({4, 32}, 1, -1, 1);
  args.feeds["t"] = Uniform({4, 32}, 2, 0, 1);
  args.loss = "L";
  RunResult observed;
  const Diagnostics d = Diagnose(g, args, &observed);
  EXPECT_EQ(d.values.size(), 21u);  // every node output
  ComputeArgs plain = args;
  plain.wrt = {"h4", "a7", "W0"};
  auto r = Compute(g, plain, Limits{});
  ASSERT_TRUE(r.ok()) << r.status();
  for (const char* v : {"h4", "a7"}) {
    double squares = 0;
    for (float x : r->gradients.at(v).values<float>()) squares += x * x;
    EXPECT_NEAR(Find(d, v)->grad_norm, std::sqrt(squares),
                1e-6 * std::sqrt(squares))
        << v;
  }
  // Observing changes nothing the run returns.
  auto again = Compute(g, args, Limits{});
  ASSERT_TRUE(again.ok());
  for (const auto& [name, t] : again->gradients) {
    EXPECT_EQ(t.values<float>(), observed.gradients.at(name).values<float>())
        << name;
  }
}

}  // namespace
}  // namespace gradserve::testing
