// Helpers shared by the tensor op tests (MatMul, Softmax, Sum/Mean,
// Flatten/Reshape, Concat).
#ifndef GRADSERVE_TESTS_CORE_OPS_TENSOR_OP_TEST_UTIL_H_
#define GRADSERVE_TESTS_CORE_OPS_TENSOR_OP_TEST_UTIL_H_

#include <string>
#include <utility>
#include <vector>

#include "tests/core/op_test_util.h"

namespace gradserve::testing {

// Runs a one-node case on hand-written values, for tests that check known
// results (worked out with PyTorch) rather than random ones.
// Feeds `values` (in the order of c.inputs) to the case's graph, run in
// `float_dtype`; when `seed` is defined it is dL/d(out0) and every float
// input is in wrt.
inline absl::StatusOr<RunResult> RunOnValues(
    const OpCase& c, std::vector<Tensor> values, Tensor seed = Tensor(),
    DType float_dtype = DType::kFloat32) {
  const bool backward = seed.defined();
  ComputeArgs args =
      ValueArgs(c, std::move(values), std::move(seed), float_dtype);
  for (const auto& [name, value] : args.feeds) {
    if (backward && IsFloating(value.dtype())) args.wrt.push_back(name);
  }
  return Compute(SingleOpGraph(c), args, Limits{});
}

// Expects the case to be rejected once its input `i` (schema name
// `input_name`) holds int64 labels instead of floats.
inline void ExpectRejectsInt64Input(OpCase c, size_t i,
                                    const std::string& input_name) {
  c.inputs[i].init = Init::kLabels;
  c.inputs[i].classes = 3;
  ExpectError(c, absl::StatusCode::kInvalidArgument,
              {"node 'node' (" + c.op + ")", "input '" + input_name + "'",
               "must be float32", "int64"});
}

// An int64 input of `shape` drawn in [0, classes) (indices, conditions).
inline TestInput IndexInput(std::string name, Shape shape,
                            int64_t classes = 2) {
  TestInput t{std::move(name), std::move(shape), Init::kLabels};
  t.classes = classes;
  return t;
}

// float32 0, 1, 2, ... of `shape`.
inline Tensor Iota(Shape shape) {
  Tensor t = Tensor::Empty(DType::kFloat32, std::move(shape));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.num_elements(); ++i) p[i] = static_cast<float>(i);
  return t;
}

// A float32 tensor's values.
inline std::vector<float> FloatValues(const Tensor& t) {
  auto v = t.values<float>();
  return {v.begin(), v.end()};
}

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_CORE_OPS_TENSOR_OP_TEST_UTIL_H_
