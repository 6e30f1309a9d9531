// The metrics registry and its text exposition (format 0.0.4), the access
// log's lines and levels, and the per-op timing the tape feeds.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "core/exec/op_times.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/access_log.h"
#include "server/gradient_service.h"
#include "server/metrics/registry.h"

namespace gradserve {
namespace {

using metrics::Registry;
using ::testing::HasSubstr;
using ::testing::Not;

// The exposition's sample lines (no comments), in order.
std::vector<std::string> Samples(const std::string& text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line[0] != '#') lines.emplace_back(line);
  }
  return lines;
}

TEST(Registry, CountersWithHelpTypeAndLabels) {
  Registry registry;
  auto* calls = registry.AddCounter("calls_total", "Calls made.", {"rpc"});
  calls->Get({"Compute"})->Add(3);
  calls->Get({"Describe"})->Add(1);
  calls->Get({"Compute"})->Add(2);  // the same series
  EXPECT_EQ(registry.Expose(),
            "# HELP calls_total Calls made.\n"
            "# TYPE calls_total counter\n"
            "calls_total{rpc=\"Compute\"} 5\n"
            "calls_total{rpc=\"Describe\"} 1\n");
}

TEST(Registry, EscapesLabelValuesAndHelp) {
  Registry registry;
  auto* family =
      registry.AddCounter("x_total", "back\\slash\nnewline \"q\"", {"a", "b"});
  family->Get({"say \"hi\"\n", "c:\\dir"})->Add(1);
  const std::string text = registry.Expose();
  // Help escapes \ and newline but not quotes; label values all three.
  EXPECT_THAT(text,
              HasSubstr("# HELP x_total back\\\\slash\\nnewline \"q\"\n"));
  EXPECT_THAT(
      text, HasSubstr("x_total{a=\"say \\\"hi\\\"\\n\",b=\"c:\\\\dir\"} 1\n"));
  EXPECT_EQ(metrics::EscapeLabelValue("plain"), "plain");
}

TEST(Registry, HidesZeroSeriesWhenAsked) {
  Registry registry;
  auto* hidden = registry.AddCounter("h_total", "h", {"code"}, 1, true);
  hidden->Get({"OK"})->Add(1);
  hidden->Get({"INTERNAL"});
  auto* shown = registry.AddCounter("s_total", "s", {"code"});
  shown->Get({"INTERNAL"});
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("h_total{code=\"OK\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("h_total{code=\"INTERNAL\"}")));
  EXPECT_THAT(text, HasSubstr("s_total{code=\"INTERNAL\"} 0\n"));
}

TEST(Registry, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry registry;
  // Kept in nanoseconds, exposed in seconds.
  auto* latency = registry.AddHistogram("lat_seconds", "Latency.", {"rpc"},
                                        {0.001, 0.01, 0.1}, 1'000'000'000);
  metrics::Histogram* h = latency->Get({"Compute"});
  for (int64_t ns : std::vector<int64_t>{500'000, 1'000'000, 2'000'000,
                                         50'000'000, 3'000'000'000}) {
    h->Observe(ns);
  }
  EXPECT_EQ(Samples(registry.Expose()),
            (std::vector<std::string>{
                "lat_seconds_bucket{rpc=\"Compute\",le=\"0.001\"} 2",
                "lat_seconds_bucket{rpc=\"Compute\",le=\"0.01\"} 3",
                "lat_seconds_bucket{rpc=\"Compute\",le=\"0.1\"} 4",
                "lat_seconds_bucket{rpc=\"Compute\",le=\"+Inf\"} 5",
                "lat_seconds_sum{rpc=\"Compute\"} 3.0535",
                "lat_seconds_count{rpc=\"Compute\"} 5"}));
  EXPECT_THAT(registry.Expose(), HasSubstr("# TYPE lat_seconds histogram\n"));
}

TEST(Registry, HistogramWithoutLabels) {
  Registry registry;
  registry.AddHistogram("h", "h", {}, {1, 2})->Get({})->Observe(2);
  EXPECT_EQ(Samples(registry.Expose()),
            (std::vector<std::string>{
                "h_bucket{le=\"1\"} 0", "h_bucket{le=\"2\"} 1",
                "h_bucket{le=\"+Inf\"} 1", "h_sum 2", "h_count 1"}));
}

TEST(Registry, CollectedValuesAreReadAtEachScrape) {
  Registry registry;
  double depth = 3;
  registry.AddCollected("depth", "Queue depth.", metrics::Type::kGauge,
                        {"queue"}, [&depth](std::vector<metrics::Sample>* out) {
                          out->push_back({{"compute"}, depth});
                        });
  EXPECT_THAT(registry.Expose(), HasSubstr("# TYPE depth gauge\n"
                                           "depth{queue=\"compute\"} 3\n"));
  depth = 0.25;
  EXPECT_THAT(registry.Expose(), HasSubstr("depth{queue=\"compute\"} 0.25\n"));
}

TEST(Registry, FormatsValues) {
  EXPECT_EQ(metrics::FormatValue(0), "0");
  EXPECT_EQ(metrics::FormatValue(123456789012), "123456789012");
  EXPECT_EQ(metrics::FormatValue(0.1), "0.1");
  EXPECT_EQ(metrics::FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(metrics::FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(metrics::FormatValue(0.0 / 0.0), "NaN");
}

TEST(Registry, ConcurrentAddsAreAllCounted) {
  Registry registry;
  metrics::Counter* c = registry.AddCounter("n_total", "n", {})->Get({});
  metrics::Histogram* h = registry.AddHistogram("v", "v", {}, {10})->Get({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([c, h] {
      for (int i = 0; i < 100000; ++i) {
        c->Add(1);
        h->Observe(i % 20);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 400000);
  const metrics::Histogram::Snapshot s = h->Read();
  EXPECT_EQ(s.cumulative, (std::vector<int64_t>{4 * 55000, 400000}));
  EXPECT_EQ(s.sum, 4 * 5000 * 190);
}

TEST(RegistryDeathTest, RefusesBadNames) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("1bad", "", {}), "bad metric");
  EXPECT_DEATH(registry.AddCounter("ok_total", "", {"le"}), "bad metric");
  EXPECT_DEATH(registry.AddCounter("ok_total", "", {"a-b"}), "bad metric");
}

server::CallRecord Call(grpc::StatusCode code) {
  return {server::MethodIndex("Compute"),
          "ipv4:127.0.0.1:40000",
          "team-a",
          code,
          120,
          64,
          1'234'567};
}

TEST(AccessLog, OneKeyValueLinePerCall) {
  const absl::Time at = absl::FromUnixMillis(1796136600123);
  EXPECT_EQ(server::AccessLog::Line(Call(grpc::StatusCode::OK), at),
            "ts=2026-12-01T14:50:00.123Z level=info rpc=Compute "
            "peer=ipv4:127.0.0.1:40000 tenant=team-a code=OK bytes_in=120 "
            "bytes_out=64 ms=1.235\n");
  server::CallRecord odd = Call(grpc::StatusCode::INTERNAL);
  odd.tenant = "";
  odd.peer = "a \"b\"\n";
  EXPECT_THAT(server::AccessLog::Line(odd, at),
              HasSubstr("level=error rpc=Compute peer=\"a \\\"b\\\"\\x0a\" "
                        "tenant=\"\" code=INTERNAL"));
}

TEST(AccessLog, LevelsChooseTheCallsWritten) {
  EXPECT_EQ(server::LevelOf(grpc::StatusCode::INVALID_ARGUMENT),
            server::LogLevel::kInfo);
  EXPECT_EQ(server::LevelOf(grpc::StatusCode::RESOURCE_EXHAUSTED),
            server::LogLevel::kWarning);
  EXPECT_EQ(server::LevelOf(grpc::StatusCode::UNKNOWN),
            server::LogLevel::kError);
  for (auto [level, lines] : std::vector<std::pair<server::LogLevel, int>>{
           {server::LogLevel::kError, 1},
           {server::LogLevel::kWarning, 2},
           {server::LogLevel::kInfo, 4}}) {
    std::FILE* out = std::tmpfile();
    server::AccessLog log(level, out);
    for (auto code :
         {grpc::StatusCode::OK, grpc::StatusCode::NOT_FOUND,
          grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::INTERNAL}) {
      log.OnCall(Call(code));
    }
    std::fflush(out);
    std::rewind(out);
    int count = 0;
    for (int c = std::fgetc(out); c != EOF; c = std::fgetc(out)) {
      count += c == '\n';
    }
    std::fclose(out);
    EXPECT_EQ(count, lines) << server::LogLevelName(level);
  }
  EXPECT_EQ(*server::ParseLogLevel("warning"), server::LogLevel::kWarning);
  EXPECT_FALSE(server::ParseLogLevel("verbose").ok());
}

TEST(OpTimes, AddsPerSlotAndDirection) {
  OpTimes& times = OpTimes::Global();
  const int slot = times.Slot("metrics_test_op");
  EXPECT_EQ(times.Slot("metrics_test_op"), slot);
  times.Add(slot, OpTimes::kForward, 100);
  times.Add(slot, OpTimes::kForward, 20);
  times.Add(slot, OpTimes::kBackward, 7);
  times.Add(-1, OpTimes::kBackward, 7);  // untimed: ignored
  bool found = false;
  for (const OpTimes::Total& t : times.Totals()) {
    if (t.op != "metrics_test_op") continue;
    found = true;
    EXPECT_EQ(t.nanoseconds[OpTimes::kForward], 120);
    EXPECT_EQ(t.runs[OpTimes::kForward], 2);
    EXPECT_EQ(t.nanoseconds[OpTimes::kBackward], 7);
    EXPECT_EQ(t.runs[OpTimes::kBackward], 1);
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace gradserve
