// Prometheus metrics: a registry of metric families and their text
// exposition (format 0.0.4). Values that the server changes on the hot path
// (counters, histograms) are series made once, at start, whose updates are
// relaxed atomic adds: no lock and no allocation per call. Values that live
// elsewhere (queue depth, sessions, cache statistics) are collected when
// scraped. Integer series may keep a finer unit than they expose
// (per_unit 1e9: kept in nanoseconds, exposed in seconds).
#ifndef GRADSERVE_SERVER_METRICS_REGISTRY_H_
#define GRADSERVE_SERVER_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gradserve::metrics {

// Label values, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Observations counted in buckets of upper bounds (stored per bucket, made
// cumulative in the exposition), with their sum and count.
class Histogram {
 public:
  explicit Histogram(const std::vector<int64_t>* bounds);
  void Observe(int64_t value);

  struct Snapshot {
    std::vector<int64_t> cumulative;  // per bound, then +Inf (= count)
    int64_t sum = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<int64_t>& bounds_;               // ascending, the family's
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<int64_t> sum_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

// A value read when scraped.
struct Sample {
  LabelValues labels;
  double value;
};
using Collector = std::function<void(std::vector<Sample>*)>;

template <typename Series>
class Family {
 public:
  // The series with these label values, made on first use (under a lock:
  // call it at start and keep the pointer, which stays valid).
  Series* Get(const LabelValues& labels) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [values, series] : series_) {
      if (values == labels) return series.get();
    }
    series_.emplace_back(labels, make_());
    return series_.back().second.get();
  }

 private:
  friend class Registry;
  explicit Family(std::function<std::unique_ptr<Series>()> make)
      : make_(std::move(make)) {}

  const std::function<std::unique_ptr<Series>()> make_;
  mutable std::mutex mu_;
  std::vector<std::pair<LabelValues, std::unique_ptr<Series>>> series_;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `name` must be a valid metric name (counters end in _total by
  // convention), `label_names` valid label names; `help` is free text.
  // Series that stay zero are left out of the exposition when
  // `hide_zero` (e.g. one series per status code).
  Family<Counter>* AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names,
                              int64_t per_unit = 1, bool hide_zero = false);
  // `bounds`: ascending upper bounds, in the exposed unit.
  Family<Histogram>* AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names,
                                  const std::vector<double>& bounds,
                                  int64_t per_unit = 1);
  void AddCollected(std::string name, std::string help, Type type,
                    std::vector<std::string> label_names, Collector collect);

  // Every family in the text exposition format, in the order added.
  std::string Expose() const;

 private:
  struct Entry;
  static std::unique_ptr<Entry> NewEntry(std::string name, std::string help,
                                         Type type,
                                         std::vector<std::string> label_names);
  void Add(std::unique_ptr<Entry> entry);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// The exposition's escaping: label values escape \, " and newline; help
// text escapes \ and newline.
std::string EscapeLabelValue(const std::string& value);
std::string EscapeHelp(const std::string& help);
// A sample value as the exposition writes it: integers exactly, +Inf,
// -Inf, NaN.
std::string FormatValue(double value);

// The content type of Registry::Expose()'s text.
inline constexpr char kExpositionContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace gradserve::metrics

#endif  // GRADSERVE_SERVER_METRICS_REGISTRY_H_
