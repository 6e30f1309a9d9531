// Orders, schedules, progress lines and the pieces train and batch share.
#include "client/train_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "client/dataset.h"
#include "client/gradctl_common.h"
#include "client/progress.h"
#include "client/reduction.h"
#include "client/svg_plot.h"
#include "gtest/gtest.h"
#include "tests/client/proto_tensors.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

TEST(TrainPlan, PermutationsAreSeededPermutations) {
  Rng a(42), b(42), c(43);
  std::vector<int64_t> pa = Permutation(1000, a), pb_ = Permutation(1000, b),
                       pc = Permutation(1000, c);
  EXPECT_EQ(pa, pb_);
  EXPECT_NE(pa, pc);
  std::vector<int64_t> sorted = pa;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  // The state after drawing continues the stream: the next epoch differs.
  EXPECT_NE(Permutation(1000, a), pa);
  // SplitMix64's first output for seed 0 (its reference value).
  Rng zero(0);
  EXPECT_EQ(zero.Next(), 0xe220a8397b1dcdafull);
}

TEST(TrainPlan, BelowIsUniform) {
  Rng rng(1);
  std::vector<int> counts(3);
  for (int i = 0; i < 30000; ++i) ++counts[rng.Below(3)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
}

TEST(TrainPlan, SchedulesFollowTorchsFormulas) {
  Schedule constant{Schedule::Kind::kConstant, 0.1};
  EXPECT_DOUBLE_EQ(LearningRate(constant, 7, 1000), 0.1);
  Schedule step{Schedule::Kind::kStep, 0.1};
  step.step_epochs = 2;
  step.gamma = 0.5;
  EXPECT_DOUBLE_EQ(LearningRate(step, 0, 0), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(step, 1, 99), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(step, 2, 0), 0.05);
  EXPECT_DOUBLE_EQ(LearningRate(step, 5, 0), 0.025);
  Schedule cosine{Schedule::Kind::kCosine, 0.1};
  cosine.min_lr = 0.01;
  cosine.total_steps = 100;
  EXPECT_DOUBLE_EQ(LearningRate(cosine, 0, 0), 0.1);
  EXPECT_NEAR(LearningRate(cosine, 0, 50), 0.055, 1e-15);
  EXPECT_NEAR(LearningRate(cosine, 0, 100), 0.01, 1e-15);
  EXPECT_NEAR(LearningRate(cosine, 0, 25),
              0.01 + 0.09 * (1 + std::cos(M_PI / 4)) / 2, 1e-15);
  EXPECT_FALSE(ParseScheduleKind("linear").ok());
  EXPECT_EQ(BatchCount(1438, 32), 45);
  EXPECT_EQ(BatchCount(64, 32), 2);
}

TEST(Progress, LinesAndPercentiles) {
  ProgressState s{17, 29, 12.3, 2, 1, "loss 0.5"};
  EXPECT_EQ(ProgressLine(s, "jobs", 10),
            "[#####.....] 17/29  59% 12.3 jobs/s ETA 1s retries 2 failed 1 "
            "loss 0.5");
  EXPECT_EQ(ProgressLine({3, 3, 0, 0, 0, ""}, "steps", 0),
            "3/3 100% 0.0 steps/s ETA ?");
  EXPECT_EQ(FormatEta(185), "3m05s");
  EXPECT_EQ(FormatEta(3725), "1h02m");
  Latencies l;
  for (int i = 1; i <= 100; ++i) l.Add(i);
  EXPECT_EQ(l.Percentile(50), 50);
  EXPECT_EQ(l.Percentile(99), 99);
  EXPECT_EQ(l.Percentile(100), 100);
  EXPECT_EQ(l.Mean(), 50.5);
  EXPECT_EQ(Latencies().Percentile(50), 0);
}

TEST(Reduction, MeanWeightsBySamplesSumAddsAndOutputsConcatenate) {
  Arrays a, b;
  a["gradients/W"] = Floats({2}, {1, 2});
  a["outputs/loss"] = Floats({}, {3});
  a["outputs/logits"] = Floats({3, 1}, {1, 2, 3});
  a["buffers/rm"] = Floats({1}, {9});
  b["gradients/W"] = Floats({2}, {4, 8});
  b["outputs/loss"] = Floats({}, {6});
  b["outputs/logits"] = Floats({1, 1}, {4});
  Reduction mean(Reduction::Kind::kMean);
  ASSERT_TRUE(mean.Add(a, 3, "job 0").ok());
  ASSERT_TRUE(mean.Add(b, 1, "job 1").ok());
  Arrays m = mean.Result();
  EXPECT_EQ(Values(m["gradients/W"]), (std::vector<double>{1.75, 3.5}));
  EXPECT_EQ(Values(m["outputs/loss"]), (std::vector<double>{3.75}));
  EXPECT_EQ(Values(m["outputs/logits"]), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(m["outputs/logits"].shape(0), 4);
  EXPECT_EQ(Values(m["samples"]), (std::vector<double>{4}));
  EXPECT_EQ(m.count("buffers/rm"), 0u);
  Reduction sum(Reduction::Kind::kSum);
  ASSERT_TRUE(sum.Add(a, 3, "job 0").ok());
  ASSERT_TRUE(sum.Add(b, 1, "job 1").ok());
  EXPECT_EQ(Values(sum.Result()["gradients/W"]), (std::vector<double>{5, 10}));
  Arrays bad;
  bad["gradients/W"] = Floats({3}, {1, 2, 3});
  EXPECT_FALSE(sum.Add(bad, 1, "job 2").ok());
}

TEST(Dataset, FeedsAreMappedOrMatchedByName) {
  Arrays arrays;
  arrays["images"] = Floats({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  arrays["labels"] = Floats({4}, {0, 1, 0, 1});
  auto data = MakeDataset(arrays, "d.npz");
  ASSERT_TRUE(data.ok());
  pb::Graph g;
  g.add_inputs("x");
  g.add_inputs("labels");
  auto feeds = ResolveFeeds({{"x", "images"}}, &g, *data);
  ASSERT_TRUE(feeds.ok()) << feeds.status();
  EXPECT_EQ(*feeds, (FeedMap{{"x", "images"}, {"labels", "labels"}}));
  auto typo = ResolveFeeds({{"y", "images"}}, &g, *data);
  EXPECT_NE(typo.status().message().find("the graph has no input 'y'"),
            std::string::npos);
  auto missing = ResolveFeeds({{"x", "pixels"}}, &g, *data);
  EXPECT_NE(missing.status().message().find(
                "d.npz has no array 'pixels' (arrays: images, labels)"),
            std::string::npos);
  EXPECT_EQ(Values(Gather(arrays["images"], {3, 0})),
            (std::vector<double>{6, 7, 0, 1}));
  EXPECT_EQ(Values(Rows(arrays["images"], 1, 3)),
            (std::vector<double>{2, 3, 4, 5}));
  arrays["short"] = Floats({3}, {1, 2, 3});
  EXPECT_FALSE(MakeDataset(arrays, "d.npz").ok());
  EXPECT_FALSE(ParseFeedMap({"x"}).ok());
  EXPECT_FALSE(ParseFeedMap({"x=a", "x=b"}).ok());
}

TEST(SvgPlot, TicksAreNiceAndCoverTheRange) {
  auto expect_ticks = [](std::vector<double> got, std::vector<double> want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  };
  expect_ticks(NiceTicks(0, 1, 5), {0, 0.2, 0.4, 0.6, 0.8, 1});
  expect_ticks(NiceTicks(1, 10, 5), {2, 4, 6, 8, 10});
  expect_ticks(NiceTicks(0.013, 0.049, 4), {0.02, 0.03, 0.04});
  const std::string svg = RenderSvg(
      "t <&>",
      {Panel{"Loss",
             "epoch",
             "loss",
             {Series{"a", "s-a", "#000", {{1, 2}, {2, NAN}, {3, 1}}}}}});
  EXPECT_NE(svg.find("t &lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(svg.find("data-series=\"s-a\""), std::string::npos);
  // The non-finite point is left out.
  const size_t points = svg.find("points=\"");
  const std::string list =
      svg.substr(points, svg.find('"', points + 8) - points);
  EXPECT_EQ(std::count(list.begin(), list.end(), ','), 2) << list;
}

}  // namespace
}  // namespace gradserve::client
