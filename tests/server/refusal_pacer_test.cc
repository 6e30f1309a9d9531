// The pace of the wire check's refusals: a host's burst at once, then one
// per interval, never more than max_delay behind, recovered once it stops;
// hosts apart; the pacer answers every refusal it holds, also when stopped,
// and holds none when off or full.
#include "server/refusal_pacer.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace gradserve::server {
namespace {

constexpr absl::Duration kInterval = absl::Milliseconds(100);

PaceOptions TenPerSecond(int64_t burst) {
  PaceOptions options;
  options.per_second = 10;
  options.burst = burst;
  options.max_delay = absl::Milliseconds(350);
  return options;
}

TEST(HostOfPeer, DropsThePortOnly) {
  EXPECT_EQ(HostOfPeer("ipv4:127.0.0.1:5012"), "ipv4:127.0.0.1");
  EXPECT_EQ(HostOfPeer("ipv6:[::1]:5012"), "ipv6:[::1]");
  EXPECT_EQ(HostOfPeer("ipv6:[fe80::1]"), "ipv6:[fe80::1]");
  EXPECT_EQ(HostOfPeer("unix:/tmp/gradserve.sock"), "unix:/tmp/gradserve.sock");
  EXPECT_EQ(HostOfPeer("unix:"), "unix:");
}

TEST(RefusalPace, AnswersTheBurstAtOnceThenOnePerInterval) {
  RefusalPace pace(TenPerSecond(3));
  const absl::Time t = absl::FromUnixSeconds(1000);
  // All at one instant: the first burst + 1 wait nothing, then one
  // interval more each, up to max_delay.
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 9; ++i) waits.push_back(pace.Next("a", t));
  const std::vector<absl::Duration> want = {absl::ZeroDuration(),
                                            absl::ZeroDuration(),
                                            absl::ZeroDuration(),
                                            absl::ZeroDuration(),
                                            kInterval,
                                            2 * kInterval,
                                            3 * kInterval,
                                            absl::Milliseconds(350),
                                            absl::Milliseconds(350)};
  EXPECT_EQ(waits, want);
  // Another host is not held back by this one.
  EXPECT_EQ(pace.Next("b", t), absl::ZeroDuration());
}

TEST(RefusalPace, ALiarThatWaitsItsTurnIsHeldOneIntervalEach) {
  RefusalPace pace(TenPerSecond(2));
  absl::Time t = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(pace.Next("a", t), absl::ZeroDuration());
  // Each next lie comes as soon as the last refusal is answered.
  for (int i = 0; i < 20; ++i) {
    const absl::Duration wait = pace.Next("a", t);
    EXPECT_EQ(wait, kInterval) << i;
    t += wait;
  }
}

TEST(RefusalPace, RecoversOnceTheHostStops) {
  RefusalPace pace(TenPerSecond(2));
  const absl::Time t = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 50; ++i) pace.Next("a", t);
  EXPECT_EQ(pace.Next("a", t), absl::Milliseconds(350));
  // The pace is at most max_delay and one interval ahead of the last
  // refusal: one burst's time more and the whole burst is back.
  const absl::Time later =
      t + 2 * kInterval + absl::Milliseconds(350) + kInterval;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pace.Next("a", later), absl::ZeroDuration()) << i;
  }
  EXPECT_GT(pace.Next("a", later), absl::ZeroDuration());
}

TEST(RefusalPace, ForgetsRecoveredHostsBeyondItsBound) {
  RefusalPace pace(TenPerSecond(0));
  const absl::Time t = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 4096; ++i) pace.Next("a" + std::to_string(i), t);
  EXPECT_EQ(pace.hosts(), 4096u);
  // A second later all have recovered: a new host makes room.
  const absl::Time later = t + absl::Seconds(1);
  pace.Next("new", later);
  EXPECT_EQ(pace.hosts(), 1u);
  // None recovered: all are forgotten rather than grow past the bound.
  for (int i = 0; i < 4095; ++i) pace.Next("b" + std::to_string(i), later);
  ASSERT_EQ(pace.hosts(), 4096u);
  pace.Next("one more", later);
  EXPECT_EQ(pace.hosts(), 1u);
}

TEST(RefusalPacer, HoldsRefusalsPastTheBurstAndAnswersEachOnce) {
  RefusalPacer pacer(TenPerSecond(1));
  std::atomic<int> answered{0};
  absl::Notification last;
  int at_once = 0;
  for (int i = 0; i < 6; ++i) {
    // Ports differ: the pace is the host's.
    const bool held = pacer.Hold("ipv4:10.0.0.1:" + std::to_string(4000 + i),
                                 [&](absl::Duration wait) {
                                   EXPECT_GT(wait, absl::ZeroDuration());
                                   if (++answered == 4) last.Notify();
                                 });
    if (!held) ++at_once;
  }
  // The burst and one more are the caller's to answer, the rest held.
  EXPECT_EQ(at_once, 2);
  ASSERT_TRUE(last.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(pacer.held(), 4);
  // Another host is not held back by this one.
  EXPECT_FALSE(pacer.Hold("ipv4:10.0.0.9:1", [](absl::Duration) {}));
}

TEST(RefusalPacer, AnswersWhatItHoldsWhenStopped) {
  PaceOptions options = TenPerSecond(0);
  options.max_delay = absl::Hours(1);
  options.per_second = 0.001;  // the second refusal would wait an hour
  std::atomic<int> answered{0};
  {
    RefusalPacer pacer(options);
    EXPECT_FALSE(pacer.Hold("ipv4:10.0.0.2:1", [&](absl::Duration) {}));
    for (int i = 0; i < 2; ++i) {
      EXPECT_TRUE(
          pacer.Hold("ipv4:10.0.0.2:1", [&](absl::Duration) { ++answered; }));
    }
    EXPECT_EQ(answered.load(), 0);
  }
  EXPECT_EQ(answered.load(), 2);
}

TEST(RefusalPacer, HoldsNothingWhenOffOrFull) {
  PaceOptions off = TenPerSecond(0);
  off.per_second = 0;
  RefusalPacer unpaced(off);
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(unpaced.Hold("ipv4:10.0.0.3:1", [](absl::Duration) {}));
  }
  EXPECT_EQ(unpaced.held(), 0);

  PaceOptions small = TenPerSecond(0);
  small.per_second = 0.001;
  small.max_delay = absl::Hours(1);
  small.max_waiting = 2;
  RefusalPacer full(small);
  std::vector<bool> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(full.Hold("ipv4:10.0.0.4:1", [](absl::Duration) {}));
  }
  // One at once (no burst), two held, the two past max_waiting at once.
  EXPECT_EQ(held, (std::vector<bool>{false, true, true, false, false}));
  EXPECT_EQ(full.held(), 2);
}

}  // namespace
}  // namespace gradserve::server
