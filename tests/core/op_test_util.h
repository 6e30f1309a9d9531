// Test harness for ops: builds a one-node graph, checks its gradients by
// finite differences in float64, and checks the float32 (oneDNN) path against
// the float64 reference.
#ifndef GRADSERVE_TESTS_CORE_OP_TEST_UTIL_H_
#define GRADSERVE_TESTS_CORE_OP_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compute.h"
#include "core/graph.h"

namespace gradserve::testing {

// How an input's values are drawn.
enum class Init {
  kUniform,        // uniform in [lo, hi)
  kAwayFromZero,   // uniform in [lo, hi) with a random sign: avoids kinks at 0
  kLabels,         // int64 class labels in [0, classes)
  kProbabilities,  // rows (last dim) that sum to 1
  kBernoulli,      // 0 or 1 with probability 1/2
};

// Where a case's graph takes an input's value from.
enum class Placement { kFeed, kParameter, kBuffer };

struct TestInput {
  std::string name;  // "" = an optional input left out
  Shape shape;
  Init init = Init::kUniform;
  double lo = -1.0;
  double hi = 1.0;
  int64_t classes = 0;                     // kLabels
  bool differentiable = true;              // include in wrt (float inputs only)
  Placement placement = Placement::kFeed;  // int64 inputs: never kParameter
};

struct OpCase {
  OpCase(std::string op, std::vector<TestInput> inputs, AttrMap attrs = {})
      : op(std::move(op)), attrs(std::move(attrs)), inputs(std::move(inputs)) {}

  std::string op;
  AttrMap attrs;
  std::vector<TestInput> inputs;
  int num_outputs = 1;
  // Outputs to seed with random dL/dy; empty = all float outputs.
  std::vector<int> seeded_outputs;
  Mode mode = Mode::kTrain;
  uint64_t seed = 7;
  // float32 path against float64 reference: |a - b| <= tol * (1 + |b|).
  double float32_tolerance = 1e-4;
  // Finite-difference check in float64.
  double fd_tolerance = 1e-6;
  double fd_epsilon = 1e-6;
  int64_t fd_max_elements = 64;  // per tensor, spread over it
};

// Deterministic random tensors (float32 unless kLabels).
Tensor MakeInput(const TestInput& in, uint64_t seed);

// The value of input i of a case, drawn from the case's seed.
Tensor CaseInput(const OpCase& c, size_t i);

// The one-node graph "node" of a case: its inputs are graph inputs,
// parameters or buffers as placed; outputs "out0"...
GraphDef SingleOpGraph(const OpCase& c);

// How the sweeps place a case's inputs: every one fed, every float one a
// parameter (int64 ones buffers), or input i fed, a parameter or a buffer by
// (i + rotation) % 3.
enum class Placements { kAllFeeds, kAllParameters, kMixed, kMixedRotated };
OpCase Placed(OpCase c, Placements p);

// Indices of the present floating inputs of a case.
std::vector<int> FloatInputs(const OpCase& c);
// The case with exactly the inputs of `subset` (indices) differentiable.
OpCase WithWrt(OpCase c, const std::vector<int>& subset);
// Every non-empty subset of FloatInputs(c), as index lists.
std::vector<std::vector<int>> NonEmptySubsets(const std::vector<int>& inputs);
// `Linear(x, w, "") TRAIN wrt {w}, x:feed w:parameter`, for traces.
std::string CaseName(const OpCase& c);

// The metas of a graph's outputs, from a forward run of `args` (its feeds,
// mode and seed; Describe plans in TRAIN only, where some EVAL cases, such as
// BatchNorm of one value per channel, are invalid).
absl::StatusOr<std::vector<TensorMeta>> OutputMetas(const GraphDef& graph,
                                                    ComputeArgs args);

// Feeds, seeds (random dL/dy) and wrt for a case and its graph.
ComputeArgs CaseArgs(const OpCase& c, const GraphDef& graph);

// Runs the case forward and backward in float32 or float64, with the inputs
// drawn from the case's seed.
absl::StatusOr<RunResult> RunCase(const OpCase& c, DType float_dtype,
                                  const Limits& limits = Limits{});

// Arguments that feed given values (in the order of c.inputs; a feed
// overrides a parameter's or buffer's value), with dL/d(out0) = `seed` when
// it is defined, and no wrt.
ComputeArgs ValueArgs(const OpCase& c, std::vector<Tensor> values, Tensor seed,
                      DType float_dtype);

// Runs a case on given values, its inputs graph inputs, parameters or
// buffers as placed; no wrt: the gradients are those of all parameters.
absl::StatusOr<RunResult> RunPlaced(const OpCase& c, std::vector<Tensor> values,
                                    Tensor seed, DType float_dtype);

// Asserts (with gtest) that the gradients pass a finite-difference check in
// float64, that exactly the differentiable inputs get one, of their shape,
// and that float32 outputs and gradients match float64 ones.
void ExpectGradientsCorrect(const OpCase& c);

// Asserts that planning or running the case fails with `code` and a message
// containing every one of `parts`.
void ExpectError(const OpCase& c, absl::StatusCode code,
                 const std::vector<std::string>& parts);

// A node with one output.
NodeDef Node(std::string name, std::string op, std::vector<std::string> inputs,
             std::string output, AttrMap attrs = {});

// float32 values uniform in [lo, hi), drawn from `seed`.
Tensor Uniform(Shape shape, uint64_t seed, double lo = -0.5, double hi = 0.5);

// Builds a tensor from values (float32 / int64).
Tensor F32(Shape shape, std::vector<float> values);
Tensor I64(Shape shape, std::vector<int64_t> values);

// Asserts two float tensors agree: |a - b| <= tol * (1 + |b|).
void ExpectClose(const Tensor& actual, const Tensor& expected, double tol,
                 const std::string& what);

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_CORE_OP_TEST_UTIL_H_
