// The drain's gate: admits until closed, then tells when the admitted calls
// are done and callers have gone quiet.
#include "server/call_gate.h"

#include <thread>

#include "gtest/gtest.h"

namespace gradserve::server {
namespace {

TEST(CallGate, RefusesOnceClosedAndKeepsCountOfTheAdmitted) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter());
  ASSERT_TRUE(gate.Enter());
  gate.Close();
  EXPECT_FALSE(gate.Enter());
  EXPECT_EQ(gate.admitted(), 2);
  gate.Leave();
  gate.Leave();
  EXPECT_EQ(gate.admitted(), 0);
  EXPECT_EQ(CallGate::Refused().code(), absl::StatusCode::kUnavailable);
}

TEST(CallGate, WaitsForTheAdmittedCallsUntilItsDeadline) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter());
  gate.Close();
  // One admitted call never leaves: the wait ends at its deadline.
  EXPECT_FALSE(gate.WaitQuiet(absl::Now() + absl::Milliseconds(50),
                              absl::ZeroDuration()));
  std::thread leave([&gate] {
    absl::SleepFor(absl::Milliseconds(20));
    gate.Leave();
  });
  EXPECT_TRUE(gate.WaitQuiet(absl::InfiniteFuture(), absl::ZeroDuration()));
  EXPECT_EQ(gate.admitted(), 0);
  leave.join();
}

TEST(CallGate, QuietMeansNoCallCameRefusedOnesIncluded) {
  CallGate gate;
  gate.Close();
  EXPECT_FALSE(gate.Enter());  // refused, but it came
  EXPECT_FALSE(gate.WaitQuiet(absl::Now(), absl::Hours(1)));
  EXPECT_TRUE(gate.WaitQuiet(absl::InfiniteFuture(), absl::Milliseconds(10)));
}

}  // namespace
}  // namespace gradserve::server
