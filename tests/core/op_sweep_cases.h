// The table the op sweeps run: one or more representative cases for every
// registered op, with optional inputs present and absent. A new op needs an
// entry here, or the sweeps fail for it.
#ifndef GRADSERVE_TESTS_CORE_OP_SWEEP_CASES_H_
#define GRADSERVE_TESTS_CORE_OP_SWEEP_CASES_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/core/op_test_util.h"

namespace gradserve::testing {

// Small cases by op name, for the gradient sweep.
const std::map<std::string, std::vector<OpCase>>& SweepCases();

// Cases by op name whose input is empty (a zero batch) while other dims are
// large: each may allocate no more than its outputs and gradients. An op
// that rejects empty inputs has an entry with no cases.
const std::map<std::string, std::vector<OpCase>>& EmptyCases();

// The names of the registered ops, sorted.
std::vector<std::string> RegisteredOps();

// Calls f for every case of `op` in `table` with each non-empty subset of
// its floating inputs as wrt; fails (gtest) when the table has no case.
void ForEachWrtSubset(const std::map<std::string, std::vector<OpCase>>& table,
                      const std::string& op,
                      const std::function<void(const OpCase&)>& f);

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_CORE_OP_SWEEP_CASES_H_
