// gradctl train --diagnostics: warnings followed across steps, and kept in
// the history a checkpoint carries.
#include "client/train_warnings.h"

#include <string>
#include <vector>

#include "client/train_history.h"
#include "gtest/gtest.h"

namespace gradserve::client {
namespace {

using Kind = WarningEvent::Kind;

const std::string kDead70 =
    "node 'relu1': 70% of ReLU units are dead (never positive in this batch "
    "of 32)";
const std::string kDead63 =
    "node 'relu1': 63% of ReLU units are dead (never positive in this batch "
    "of 17)";
const std::string kDead2 =
    "node 'relu2': 63% of ReLU units are dead (never positive in this batch "
    "of 17)";
const std::string kVanishing =
    "gradient norm at 'fc0' is 1.2e-06 of that at 'fc9': vanishing gradients";

TEST(WarningKey, NumbersOutsideQuotesAreOneWarning) {
  EXPECT_EQ(WarningKey(kDead70), WarningKey(kDead63));
  EXPECT_EQ(WarningKey(kDead70),
            "node 'relu1': #% of ReLU units are dead (never positive in this "
            "batch of #)");
  EXPECT_NE(WarningKey(kDead63), WarningKey(kDead2));  // another node
  EXPECT_EQ(WarningKey(kVanishing),
            "gradient norm at 'fc0' is # of that at 'fc9': vanishing "
            "gradients");
  EXPECT_EQ(WarningKey("ratio 0.00031 and 7E+3, x2 stays"),
            "ratio # and #, x2 stays");
}

TEST(WarningTracker, TellsAWarningOnceThenWhenItClears) {
  WarningTracker t;
  std::vector<WarningEvent> e = t.Observe(1, {kDead70});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, Kind::kAppeared);
  EXPECT_EQ(FormatWarningEvent(e[0]), "step 1: warning: " + kDead70);
  // The same warning with other numbers: nothing new.
  EXPECT_TRUE(t.Observe(11, {kDead63}).empty());
  EXPECT_TRUE(t.Observe(21, {kDead63, kDead63}).empty());
  e = t.Observe(31, {kVanishing, kDead63});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].text, kVanishing);
  EXPECT_EQ(e[0].since, 31);
  ASSERT_EQ(t.active().size(), 2u);
  EXPECT_EQ(t.active()[0].text, kDead63);  // first appeared first
  EXPECT_EQ(t.active()[0].since, 1);
  e = t.Observe(41, {kVanishing});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].kind, Kind::kCleared);
  EXPECT_EQ(FormatWarningEvent(e[0]),
            "step 41: cleared (warned since step 1): " + kDead63);
  e = t.Observe(51, {kDead70});  // back: a new appearance
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].kind, Kind::kAppeared);
  EXPECT_EQ(e[0].since, 51);
  EXPECT_EQ(e[1].kind, Kind::kCleared);
  EXPECT_EQ(e[1].text, kVanishing);
  EXPECT_EQ(t.last_step(), 51);
  EXPECT_EQ(t.Observe(61, {}).size(), 1u);
  EXPECT_TRUE(t.active().empty());
}

TEST(DistinctWarnings, OneAKeyWithItsLastText) {
  EXPECT_EQ(DistinctWarnings({{kDead70}, {}, {kVanishing, kDead63}, {kDead2}}),
            (std::vector<std::string>{kDead63, kVanishing, kDead2}));
  EXPECT_TRUE(DistinctWarnings({{}, {}}).empty());
}

TEST(WarningsCsvField, JoinedAndQuotedWhenNeeded) {
  EXPECT_EQ(WarningsCsvField({}), "");
  EXPECT_EQ(WarningsCsvField({"a b", "c"}), "a b | c");
  EXPECT_EQ(WarningsCsvField({"node 'x,y': \"q\""}),
            "\"node 'x,y': \"\"q\"\"\"");
}

TEST(History, WarningsSurviveTheCheckpointArrays) {
  History h;
  StepRecord a;
  a.step = 1;
  a.diagnosed = true;
  a.warnings = {kDead70, kVanishing};
  StepRecord b;
  b.step = 2;
  StepRecord c;
  c.step = 3;
  c.diagnosed = true;  // diagnosed, no warnings
  h.steps = {a, b, c};
  EpochRecord e;
  e.epoch = 1;
  e.warnings = {kDead70};
  h.epochs = {e};
  Arrays arrays;
  AddHistoryArrays(h, &arrays);
  absl::StatusOr<History> back = HistoryFromArrays(arrays, "test");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->steps.size(), 3u);
  EXPECT_EQ(back->steps[0].warnings, a.warnings);
  EXPECT_TRUE(back->steps[0].diagnosed);
  EXPECT_FALSE(back->steps[1].diagnosed);
  EXPECT_TRUE(back->steps[1].warnings.empty());
  EXPECT_TRUE(back->steps[2].diagnosed);
  EXPECT_TRUE(back->steps[2].warnings.empty());
  EXPECT_EQ(back->epochs.at(0).warnings, e.warnings);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(StepCsvRow(back->steps[i]), StepCsvRow(h.steps[i]));
  }
  EXPECT_EQ(StepCsvRow(h.steps[0]).substr(StepCsvRow(h.steps[0]).rfind(',')),
            "," + kDead70 + " | " + kVanishing);
  // A checkpoint from before --diagnostics: no warnings, none diagnosed.
  arrays.erase("train/steps/diagnosed");
  arrays.erase("train/steps/warnings_utf8");
  arrays.erase("train/epochs/warnings_utf8");
  back = HistoryFromArrays(arrays, "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->steps[0].diagnosed);
  EXPECT_TRUE(back->steps[0].warnings.empty());
  // Lengths past the bytes there are: refused, naming the array.
  AddHistoryArrays(h, &arrays);
  arrays["train/steps/warnings_utf8"].mutable_data()->resize(3 * 8 + 8);
  back = HistoryFromArrays(arrays, "ckpt.npz");
  EXPECT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("train/steps/warnings_utf8"),
            std::string::npos)
      << back.status();
}

}  // namespace
}  // namespace gradserve::client
