// Helpers for the loss op tests: cases with a reduction, and runs of a loss
// on given tensors as the request's loss (dL/dy = 1).
#ifndef GRADSERVE_TESTS_CORE_OPS_LOSS_TEST_UTIL_H_
#define GRADSERVE_TESTS_CORE_OPS_LOSS_TEST_UTIL_H_

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/core/op_test_util.h"

namespace gradserve::testing {

inline OpCase LossCase(const std::string& op, std::vector<TestInput> inputs,
                       const std::string& reduction) {
  return OpCase(op, std::move(inputs), {{"reduction", reduction}});
}

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Runs `op` on `inputs` (in the op's input order) with `reduction`, the
// output as the loss, returning the gradients of `wrt`; inputs are cast to
// `dtype` when float.
inline absl::StatusOr<RunResult> RunLoss(const std::string& op,
                                         const std::string& reduction,
                                         const NamedTensors& inputs,
                                         std::vector<std::string> wrt,
                                         DType dtype = DType::kFloat64) {
  std::vector<TestInput> specs;
  ComputeArgs args;
  for (const auto& [name, t] : inputs) {
    specs.push_back({name, t.shape()});
    args.feeds[name] = t;
  }
  args.loss = "out0";
  args.wrt = std::move(wrt);
  args.float_dtype = dtype;
  return Compute(SingleOpGraph(LossCase(op, specs, reduction)), args, Limits{});
}

inline double LossValue(const RunResult& r) {
  return r.outputs.at("out0").CastFloat(DType::kFloat64).data<double>()[0];
}

inline Tensor F64(Shape shape, std::vector<double> values) {
  return Tensor::FromValues<double>(std::move(shape), values);
}

// Runs the loss with RunLoss and checks its value and the gradients of the
// inputs named in `gradients`: |a − b| <= tol · (1 + |b|).
inline void ExpectLoss(const std::string& op, const std::string& reduction,
                       const NamedTensors& inputs, DType dtype, double tol,
                       double loss, const NamedTensors& gradients) {
  SCOPED_TRACE(absl::StrCat(op, " ", reduction, " in ", DTypeName(dtype)));
  std::vector<std::string> wrt;
  for (const auto& [name, g] : gradients) wrt.push_back(name);
  auto r = RunLoss(op, reduction, inputs, wrt, dtype);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(r->outputs.at("out0"), F64({}, {loss}), tol, "loss");
  EXPECT_EQ(r->gradients.size(), gradients.size());
  for (const auto& [name, g] : gradients) {
    ExpectClose(r->gradients.at(name), g, tol, "gradient of " + name);
  }
}

// torch's reductions of no terms: "mean" is NaN (0 / 0) and "sum" 0; the
// gradients of `wrt` come back with their inputs' empty shapes.
inline void ExpectEmptyReductions(const std::string& op,
                                  const NamedTensors& inputs,
                                  const std::vector<std::string>& wrt) {
  for (const char* reduction : {"mean", "sum"}) {
    SCOPED_TRACE(absl::StrCat(op, " ", reduction));
    auto r = RunLoss(op, reduction, inputs, wrt);
    ASSERT_TRUE(r.ok()) << r.status();
    const double loss = LossValue(*r);
    if (reduction == std::string("mean")) {
      EXPECT_TRUE(std::isnan(loss)) << loss;
    } else {
      EXPECT_EQ(loss, 0);
    }
    for (const auto& [name, t] : inputs) {
      auto it = r->gradients.find(name);
      if (it != r->gradients.end()) {
        EXPECT_EQ(it->second.shape(), t.shape()) << name;
      }
    }
    EXPECT_EQ(r->gradients.size(), wrt.size());
  }
}

// Asserts that `result` failed with `code` and a message holding `parts`.
inline void ExpectFailure(const absl::StatusOr<RunResult>& result,
                          absl::StatusCode code,
                          const std::vector<std::string>& parts) {
  ASSERT_FALSE(result.ok()) << "the bad input was accepted";
  EXPECT_EQ(result.status().code(), code) << result.status();
  for (const std::string& part : parts) {
    EXPECT_NE(result.status().message().find(part), std::string::npos)
        << "message lacks '" << part << "': " << result.status();
  }
}

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_CORE_OPS_LOSS_TEST_UTIL_H_
