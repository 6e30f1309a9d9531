// What long gradctl commands show while they run: a bar redrawn in place on
// a terminal, plain lines every few seconds otherwise; and the latency
// percentiles of their closing summaries.
#ifndef GRADSERVE_CLIENT_PROGRESS_H_
#define GRADSERVE_CLIENT_PROGRESS_H_

#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace gradserve::client {

// Call latencies, in milliseconds.
class Latencies {
 public:
  void Add(double ms);
  size_t count() const { return ms_.size(); }
  // The nearest-rank percentile (p in [0, 100]); 0 when empty.
  double Percentile(double p) const;
  double Mean() const;

 private:
  std::vector<double> ms_;
};

// "12.3 ms", "1.20 s".
std::string FormatMs(double ms);
// "42 s", "3m05s", "1h02m".
std::string FormatEta(double seconds);

struct ProgressState {
  int64_t done = 0, total = 0;
  double rate = 0;  // units a second
  int64_t retries = 0, failed = 0;
  std::string extra;  // e.g. "loss 0.3412"
};

// One line of progress: "[#####.....] 17/29 59% 12.3 jobs/s ETA 1s ..."
// (`bar_width` 0: no bar).
std::string ProgressLine(const ProgressState& s, absl::string_view unit,
                         int bar_width);

class Progress {
 public:
  enum class Style { kBar, kLines, kOff };
  // `label` starts each line ("batch", "epoch 2/5").
  Progress(std::ostream& out, Style style, std::string label, std::string unit,
           absl::Duration line_interval = absl::Seconds(5));

  // Redraws (at most 10 times a second on a terminal, every line_interval
  // otherwise); thread-safe.
  void Update(const ProgressState& state);
  // The last state, drawn once more (plain lines: only when one was drawn
  // before); ends the bar's line.
  void Finish(const ProgressState& state);
  // A line of its own (any style), printed over the bar, which the next
  // Update redraws below it.
  void Note(const std::string& line);

 private:
  void Draw(const ProgressState& state);

  std::ostream& out_;
  const Style style_;
  const std::string label_, unit_;
  const absl::Duration interval_;
  absl::Time last_;
  bool drawn_ = false;
  std::mutex mutex_;
};

// kBar when `tty`, else kLines; "bar", "plain" and "off" force one.
Progress::Style ProgressStyle(const std::string& flag, bool tty);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_PROGRESS_H_
