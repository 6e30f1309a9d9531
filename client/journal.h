// The journal of a batch run, in its --out directory: a header naming the
// run (its fingerprint and job count), then one line per job that ended.
// A job's result file is written (atomically) before its "ok" line, and each
// line is flushed to disk before the next job is reported, so after a crash,
// Ctrl-C or kill -9 the journal never claims a result that is not on disk; a
// job whose result landed but whose line did not is simply run again and
// its file replaced, so no result is lost or kept twice.
#ifndef GRADSERVE_CLIENT_JOURNAL_H_
#define GRADSERVE_CLIENT_JOURNAL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradserve::client {

class Journal {
 public:
  static constexpr char kFileName[] = "journal.log";

  // Opens DIR/journal.log. Without `resume`, the file must not exist yet
  // (an earlier run's journal is never overwritten). With it, an existing
  // journal must be of the same run (fingerprint and job count); its
  // entries are loaded, a torn last line (a write cut by a crash) is cut
  // off. Missing, the run starts afresh.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(
      const std::string& dir, const std::string& fingerprint, int64_t jobs,
      bool resume);
  ~Journal();

  // Jobs whose result is recorded, and failures recorded (code and message,
  // the last one for each job) that no later success replaced.
  const std::set<int64_t>& done() const { return done_; }
  const std::map<int64_t, std::string>& failed() const { return failed_; }
  bool resumed() const { return resumed_; }
  // Whether the run's --reduce result was written (the run is complete).
  bool reduced() const { return reduced_; }

  // Appends a line and flushes it to disk; thread-safe.
  absl::Status RecordOk(int64_t job, int attempts, double latency_ms);
  absl::Status RecordFailed(int64_t job, const absl::Status& status);
  absl::Status RecordReduced();

 private:
  Journal(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status Load(const std::string& text, const std::string& header,
                    int64_t jobs);
  absl::Status Append(const std::string& line);

  const std::string path_;
  const int fd_;
  bool resumed_ = false;
  bool reduced_ = false;
  std::set<int64_t> done_;
  std::map<int64_t, std::string> failed_;
  std::mutex mutex_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_JOURNAL_H_
