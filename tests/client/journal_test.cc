// The batch journal: fresh runs, resumes, torn lines, other runs refused.
#include "client/journal.h"

#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "client/npy.h"
#include "gtest/gtest.h"

namespace gradserve::client {
namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("gradserve_journal_" + std::to_string(::getpid())))
               .string();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string File() const { return dir_ + "/journal.log"; }
  std::string dir_;
};

TEST_F(JournalTest, ResumeLoadsWhatWasRecorded) {
  {
    auto journal = Journal::Open(dir_, "abc", 5, false);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_FALSE((*journal)->resumed());
    ASSERT_TRUE((*journal)->RecordOk(3, 1, 2.5).ok());
    ASSERT_TRUE(
        (*journal)->RecordFailed(1, absl::InvalidArgumentError("bad\nx")).ok());
    ASSERT_TRUE((*journal)->RecordOk(0, 2, 1).ok());
  }
  auto journal = Journal::Open(dir_, "abc", 5, true);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_TRUE((*journal)->resumed());
  EXPECT_EQ((*journal)->done(), (std::set<int64_t>{0, 3}));
  ASSERT_EQ((*journal)->failed().count(1), 1u);
  EXPECT_EQ((*journal)->failed().at(1), "INVALID_ARGUMENT: bad x");
  // A later success clears the failure.
  ASSERT_TRUE((*journal)->RecordOk(1, 1, 1).ok());
  auto again = Journal::Open(dir_, "abc", 5, true);
  EXPECT_EQ((*again)->done(), (std::set<int64_t>{0, 1, 3}));
  EXPECT_TRUE((*again)->failed().empty());
}

TEST_F(JournalTest, ATornLastLineIsCutOff) {
  {
    auto journal = Journal::Open(dir_, "abc", 5, false);
    ASSERT_TRUE((*journal)->RecordOk(2, 1, 1).ok());
  }
  {
    std::ofstream out(File(), std::ios::app);
    out << "ok 4 attem";  // a write cut short by a crash
  }
  auto journal = Journal::Open(dir_, "abc", 5, true);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_EQ((*journal)->done(), (std::set<int64_t>{2}));
  ASSERT_TRUE((*journal)->RecordOk(4, 1, 1).ok());
  auto text = ReadFile(File());
  // The torn bytes are gone, not glued to the next line.
  EXPECT_EQ(text->find("attemok"), std::string::npos) << *text;
  EXPECT_NE(text->find("\nok 4 attempts=1"), std::string::npos) << *text;
  EXPECT_EQ((*Journal::Open(dir_, "abc", 5, true))->done(),
            (std::set<int64_t>{2, 4}));
}

TEST_F(JournalTest, AnEarlierRunIsNeverOverwritten) {
  ASSERT_TRUE(Journal::Open(dir_, "abc", 5, false).ok());
  auto again = Journal::Open(dir_, "abc", 5, false);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("pass --resume"), std::string::npos);
}

TEST_F(JournalTest, AnotherRunsJournalIsRefused) {
  ASSERT_TRUE(Journal::Open(dir_, "abc", 5, false).ok());
  for (auto [fingerprint, jobs] :
       {std::pair<std::string, int64_t>{"abd", 5}, {"abc", 6}}) {
    auto other = Journal::Open(dir_, fingerprint, jobs, true);
    ASSERT_FALSE(other.ok());
    EXPECT_NE(other.status().message().find("journal of another run"),
              std::string::npos)
        << other.status();
  }
}

TEST_F(JournalTest, EntriesOutOfRangeAreDataLoss) {
  { ASSERT_TRUE(Journal::Open(dir_, "abc", 5, false).ok()); }
  {
    std::ofstream out(File(), std::ios::app);
    out << "ok 9 attempts=1\n";
  }
  auto journal = Journal::Open(dir_, "abc", 5, true);
  ASSERT_FALSE(journal.ok());
  EXPECT_EQ(journal.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(JournalTest, ResumeWithoutAJournalStartsAfresh) {
  auto journal = Journal::Open(dir_, "abc", 5, true);
  ASSERT_TRUE(journal.ok());
  EXPECT_FALSE((*journal)->resumed());
  EXPECT_TRUE((*journal)->done().empty());
}

}  // namespace
}  // namespace gradserve::client
