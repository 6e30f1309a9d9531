// Ops that PyTorch also runs on unbatched inputs (Conv1d, Conv2d, the
// pools, the class losses): the unbatched case is the batched one on a
// batch of one.
#ifndef GRADSERVE_TESTS_CORE_OPS_UNBATCHED_TEST_UTIL_H_
#define GRADSERVE_TESTS_CORE_OPS_UNBATCHED_TEST_UTIL_H_

#include <vector>

#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {

inline Shape WithBatchOfOne(Shape s) {
  s.insert(s.begin(), 1);
  return s;
}

// `c` (inputs `unsqueezed` given without their batch dim) passes the
// gradient checks, and gives what the case with a leading 1 on those inputs
// gives, outputs and gradients, in float32 and float64.
inline void ExpectUnbatchedIsABatchOfOne(const OpCase& c,
                                         const std::vector<int>& unsqueezed) {
  SCOPED_TRACE(CaseName(c));
  ExpectGradientsCorrect(c);
  OpCase batched = c;
  std::vector<Tensor> values, batched_values;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    values.push_back(c.inputs[i].name.empty() ? Tensor() : CaseInput(c, i));
    batched_values.push_back(values.back());
  }
  for (int i : unsqueezed) {
    batched.inputs[i].shape = WithBatchOfOne(c.inputs[i].shape);
    batched_values[i] = values[i].Reshaped(batched.inputs[i].shape);
  }
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto forward = RunOnValues(c, values, Tensor(), dtype);
    ASSERT_TRUE(forward.ok()) << forward.status();
    const Shape y = forward->outputs.at("out0").shape();
    const Tensor seed = MakeInput({"seed", y}, 3);
    auto one = RunOnValues(c, values, seed, dtype);
    ASSERT_TRUE(one.ok()) << one.status();
    auto batched_forward =
        RunOnValues(batched, batched_values, Tensor(), dtype);
    ASSERT_TRUE(batched_forward.ok()) << batched_forward.status();
    const Shape batched_y = batched_forward->outputs.at("out0").shape();
    auto many =
        RunOnValues(batched, batched_values, seed.Reshaped(batched_y), dtype);
    ASSERT_TRUE(many.ok()) << many.status();
    ExpectClose(one->outputs.at("out0"), many->outputs.at("out0").Reshaped(y),
                1e-6, "y");
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const std::string& name = c.inputs[i].name;
      if (name.empty() || !one->gradients.count(name)) continue;
      ExpectClose(one->gradients.at(name),
                  many->gradients.at(name).Reshaped(c.inputs[i].shape), 1e-6,
                  "d/d" + name);
    }
  }
}

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_CORE_OPS_UNBATCHED_TEST_UTIL_H_
