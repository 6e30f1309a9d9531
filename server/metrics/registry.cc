#include "server/metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gradserve::metrics {
namespace {

bool ValidName(const std::string& name, bool colons) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [colons](char c) {
    return absl::ascii_isalnum(c) || c == '_' || (colons && c == ':');
  });
}

// A bad name is a programming error in the table of metrics.
void CheckNames(const std::string& name,
                const std::vector<std::string>& label_names) {
  bool ok = ValidName(name, /*colons=*/true);
  for (const std::string& label : label_names) {
    ok = ok && ValidName(label, false) && label.rfind("__", 0) != 0 &&
         label != "le";
  }
  if (!ok) {
    std::fprintf(stderr, "metrics: bad metric or label name in %s\n",
                 name.c_str());
    std::abort();
  }
}

// {a="x",b="y"} with `extra` (le="...") last; "" without labels.
std::string LabelText(const std::vector<std::string>& names,
                      const LabelValues& values, const std::string& extra) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    absl::StrAppend(&text, text.empty() ? "" : ",", names[i], "=\"",
                    EscapeLabelValue(values[i]), "\"");
  }
  if (!extra.empty()) absl::StrAppend(&text, text.empty() ? "" : ",", extra);
  return text.empty() ? text : absl::StrCat("{", text, "}");
}

// \ and newline escaped, and " when `quotes`.
std::string Escape(const std::string& text, bool quotes) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || (quotes && c == '"')) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

Histogram::Histogram(const std::vector<int64_t>* bounds)
    : bounds_(*bounds), buckets_(new std::atomic<int64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(int64_t value) {
  // A dozen or so bounds: a linear scan beats a binary search.
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  int64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(total);
  }
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

struct Registry::Entry {
  std::string name, help;
  Type type;
  std::vector<std::string> label_names;
  int64_t per_unit = 1;  // kept integers per exposed unit
  bool hide_zero = false;
  std::vector<double> bounds;        // histograms: in the exposed unit
  std::vector<int64_t> kept_bounds;  // and as kept (times per_unit)
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Histogram>> histograms;
  Collector collect;

  // A division, not a product with 1/per_unit: the double nearest the
  // exact value (1234 ns is 1.234e-06 s).
  double Exposed(int64_t kept) const {
    return static_cast<double>(kept) / static_cast<double>(per_unit);
  }
  void Write(std::string* out) const;
  void WriteCounters(std::string* out) const;
  void WriteHistograms(std::string* out) const;
};

void Registry::Entry::Write(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(help), "\n", "# TYPE ",
                  name, " ", TypeName(type), "\n");
  if (counters != nullptr) WriteCounters(out);
  if (histograms != nullptr) WriteHistograms(out);
  if (collect) {
    std::vector<Sample> samples;
    collect(&samples);
    for (const Sample& s : samples) {
      absl::StrAppend(out, name, LabelText(label_names, s.labels, ""), " ",
                      FormatValue(s.value), "\n");
    }
  }
}

void Registry::Entry::WriteCounters(std::string* out) const {
  std::lock_guard<std::mutex> lock(counters->mu_);
  for (const auto& [labels, counter] : counters->series_) {
    const int64_t value = counter->value();
    if (hide_zero && value == 0) continue;
    absl::StrAppend(out, name, LabelText(label_names, labels, ""), " ",
                    FormatValue(Exposed(value)), "\n");
  }
}

void Registry::Entry::WriteHistograms(std::string* out) const {
  std::lock_guard<std::mutex> lock(histograms->mu_);
  for (const auto& [labels, histogram] : histograms->series_) {
    const Histogram::Snapshot h = histogram->Read();
    for (size_t i = 0; i <= bounds.size(); ++i) {
      const std::string le = absl::StrCat(
          "le=\"", i < bounds.size() ? FormatValue(bounds[i]) : "+Inf", "\"");
      absl::StrAppend(out, name, "_bucket", LabelText(label_names, labels, le),
                      " ", h.cumulative[i], "\n");
    }
    const std::string text = LabelText(label_names, labels, "");
    absl::StrAppend(out, name, "_sum", text, " ", FormatValue(Exposed(h.sum)),
                    "\n", name, "_count", text, " ", h.cumulative.back(), "\n");
  }
}

Registry::Registry() = default;
Registry::~Registry() = default;

void Registry::Add(std::unique_ptr<Entry> entry) {
  CheckNames(entry->name, entry->label_names);
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back(std::move(entry));
}

std::unique_ptr<Registry::Entry> Registry::NewEntry(
    std::string name, std::string help, Type type,
    std::vector<std::string> label_names) {
  auto entry = std::make_unique<Entry>();
  entry->name = std::move(name);
  entry->help = std::move(help);
  entry->type = type;
  entry->label_names = std::move(label_names);
  return entry;
}

Family<Counter>* Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names,
                                      int64_t per_unit, bool hide_zero) {
  auto entry = NewEntry(std::move(name), std::move(help), Type::kCounter,
                        std::move(label_names));
  entry->per_unit = per_unit;
  entry->hide_zero = hide_zero;
  entry->counters.reset(
      new Family<Counter>([] { return std::make_unique<Counter>(); }));
  Family<Counter>* family = entry->counters.get();
  Add(std::move(entry));
  return family;
}

Family<Histogram>* Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          const std::vector<double>& bounds,
                                          int64_t per_unit) {
  auto entry = NewEntry(std::move(name), std::move(help), Type::kHistogram,
                        std::move(label_names));
  entry->per_unit = per_unit;
  entry->bounds = bounds;
  for (double bound : bounds) {
    entry->kept_bounds.push_back(std::llround(bound * per_unit));
  }
  const std::vector<int64_t>* kept = &entry->kept_bounds;
  entry->histograms.reset(new Family<Histogram>(
      [kept] { return std::make_unique<Histogram>(kept); }));
  Family<Histogram>* family = entry->histograms.get();
  Add(std::move(entry));
  return family;
}

void Registry::AddCollected(std::string name, std::string help, Type type,
                            std::vector<std::string> label_names,
                            Collector collect) {
  auto entry =
      NewEntry(std::move(name), std::move(help), type, std::move(label_names));
  entry->collect = std::move(collect);
  Add(std::move(entry));
}

std::string Registry::Expose() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& entry : entries_) entry->Write(&out);
  return out;
}

std::string EscapeLabelValue(const std::string& value) {
  return Escape(value, /*quotes=*/true);
}

std::string EscapeHelp(const std::string& help) {
  return Escape(help, /*quotes=*/false);
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  // The shortest text that reads back as the same double.
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, end);
}

}  // namespace gradserve::metrics
