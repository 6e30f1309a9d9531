#include "client/progress.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace gradserve::client {

void Latencies::Add(double ms) { ms_.push_back(ms); }

double Latencies::Percentile(double p) const {
  if (ms_.empty()) return 0;
  std::vector<double> sorted = ms_;
  std::sort(sorted.begin(), sorted.end());
  const size_t rank = static_cast<size_t>(
      std::ceil(p / 100 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

double Latencies::Mean() const {
  if (ms_.empty()) return 0;
  return std::accumulate(ms_.begin(), ms_.end(), 0.0) /
         static_cast<double>(ms_.size());
}

std::string FormatMs(double ms) {
  if (ms >= 1000) return absl::StrFormat("%.2f s", ms / 1000);
  if (ms >= 100) return absl::StrFormat("%.0f ms", ms);
  return absl::StrFormat("%.3g ms", ms);
}

std::string FormatEta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, s / 60 % 60);
}

std::string ProgressLine(const ProgressState& s, absl::string_view unit,
                         int bar_width) {
  const double fraction =
      s.total > 0 ? static_cast<double>(s.done) / static_cast<double>(s.total)
                  : 1.0;
  std::string line;
  if (bar_width > 0) {
    const int filled = static_cast<int>(fraction * bar_width);
    absl::StrAppend(&line, "[", std::string(filled, '#'),
                    std::string(bar_width - filled, '.'), "] ");
  }
  absl::StrAppend(&line, s.done, "/", s.total, " ",
                  absl::StrFormat("%3.0f%%", 100 * fraction), " ",
                  absl::StrFormat("%.1f", s.rate), " ", unit, "/s ETA ",
                  s.rate > 0 ? FormatEta((s.total - s.done) / s.rate) : "?");
  if (s.retries > 0) absl::StrAppend(&line, " retries ", s.retries);
  if (s.failed > 0) absl::StrAppend(&line, " failed ", s.failed);
  if (!s.extra.empty()) absl::StrAppend(&line, " ", s.extra);
  return line;
}

Progress::Progress(std::ostream& out, Style style, std::string label,
                   std::string unit, absl::Duration line_interval)
    : out_(out),
      style_(style),
      label_(std::move(label)),
      unit_(std::move(unit)),
      interval_(line_interval),
      // Plain lines only once a run has gone on a while.
      last_(style == Style::kLines ? absl::Now() : absl::InfinitePast()) {}

void Progress::Draw(const ProgressState& state) {
  if (style_ == Style::kBar) {
    // \r and "erase to the end of the line": the bar is redrawn in place.
    out_ << "\r" << label_ << " " << ProgressLine(state, unit_, 30) << "\x1b[K"
         << std::flush;
  } else {
    out_ << label_ << ": " << ProgressLine(state, unit_, 0) << "\n"
         << std::flush;
  }
}

void Progress::Update(const ProgressState& state) {
  if (style_ == Style::kOff) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const absl::Time now = absl::Now();
  const absl::Duration every =
      style_ == Style::kBar ? absl::Milliseconds(100) : interval_;
  if (now - last_ < every) return;
  last_ = now;
  drawn_ = true;
  Draw(state);
}

void Progress::Finish(const ProgressState& state) {
  if (style_ == Style::kOff) return;
  std::lock_guard<std::mutex> lock(mutex_);
  // A short run's plain lines would only repeat its summary.
  if (style_ == Style::kLines && !drawn_) return;
  Draw(state);
  if (style_ == Style::kBar) out_ << "\n" << std::flush;
}

void Progress::Note(const std::string& line) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (style_ == Style::kBar) out_ << "\r\x1b[K";
  out_ << line << "\n" << std::flush;
  last_ = absl::InfinitePast();  // the bar comes back at the next Update
}

Progress::Style ProgressStyle(const std::string& flag, bool tty) {
  if (flag == "bar") return Progress::Style::kBar;
  if (flag == "plain") return Progress::Style::kLines;
  if (flag == "off") return Progress::Style::kOff;
  return tty ? Progress::Style::kBar : Progress::Style::kLines;
}

}  // namespace gradserve::client
