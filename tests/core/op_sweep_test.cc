// Every registered op, every non-empty subset of its floating inputs as wrt,
// each input fed, a parameter or a buffer: gradients in float64 against
// central finite differences, float32 (oneDNN) against float64.
#include "gtest/gtest.h"
#include "tests/core/op_sweep_cases.h"

namespace gradserve::testing {
namespace {

constexpr Placements kPlacements[] = {
    Placements::kAllFeeds, Placements::kAllParameters, Placements::kMixed,
    Placements::kMixedRotated};

class OpSweep : public ::testing::TestWithParam<std::string> {};

TEST_P(OpSweep, EveryWrtSubsetAndPlacementMatchesFiniteDifferences) {
  ForEachWrtSubset(SweepCases(), GetParam(), [](const OpCase& c) {
    for (Placements p : kPlacements) {
      OpCase placed = Placed(c, p);
      placed.fd_max_elements = 8;
      ExpectGradientsCorrect(placed);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(RegisteredOps, OpSweep,
                         ::testing::ValuesIn(RegisteredOps()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(OpSweepTable, NamesOnlyRegisteredOps) {
  const std::vector<std::string> ops = RegisteredOps();
  for (const auto* table : {&SweepCases(), &EmptyCases()}) {
    for (const auto& [op, cases] : *table) {
      EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
      for (const OpCase& c : cases) EXPECT_EQ(c.op, op);
    }
  }
}

}  // namespace
}  // namespace gradserve::testing
