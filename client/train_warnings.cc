#include "client/train_warnings.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace gradserve::client {
namespace {

bool Digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// The end of the number starting at text[i] (a digit): digits and points,
// then an exponent ("e-06") when one follows.
size_t NumberEnd(absl::string_view text, size_t i) {
  while (i < text.size() && (Digit(text[i]) || text[i] == '.')) ++i;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    size_t j = i + 1;
    if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
    if (j < text.size() && Digit(text[j])) {
      while (j < text.size() && Digit(text[j])) ++j;
      return j;
    }
  }
  return i;
}

template <typename List>
auto FindKey(List& list, const std::string& key) {
  return std::find_if(list.begin(), list.end(),
                      [&](const auto& a) { return a.key == key; });
}

}  // namespace

std::string WarningKey(absl::string_view warning) {
  std::string key;
  bool quoted = false;
  for (size_t i = 0; i < warning.size();) {
    const char c = warning[i];
    // A number starts at a digit that does not continue a word ("fc1").
    const bool word =
        i > 0 &&
        (std::isalnum(static_cast<unsigned char>(warning[i - 1])) != 0 ||
         warning[i - 1] == '_');
    if (!quoted && Digit(c) && !word) {
      key += '#';
      i = NumberEnd(warning, i);
      continue;
    }
    if (c == '\'') quoted = !quoted;
    key += c;
    ++i;
  }
  return key;
}

std::string FormatWarningEvent(const WarningEvent& e) {
  if (e.kind == WarningEvent::Kind::kAppeared) {
    return absl::StrCat("step ", e.step, ": warning: ", e.text);
  }
  return absl::StrCat("step ", e.step, ": cleared (warned since step ", e.since,
                      "): ", e.text);
}

std::vector<WarningEvent> WarningTracker::Observe(
    int64_t step, const std::vector<std::string>& warnings) {
  std::vector<WarningEvent> events;
  std::vector<Active> now;
  for (const std::string& text : warnings) {
    Active a{WarningKey(text), text, step};
    if (FindKey(now, a.key) != now.end()) continue;  // one a key
    auto before = FindKey(active_, a.key);
    if (before != active_.end()) {
      a.since = before->since;
    } else {
      events.push_back({WarningEvent::Kind::kAppeared, step, step, text});
    }
    now.push_back(std::move(a));
  }
  for (const Active& a : active_) {
    if (FindKey(now, a.key) == now.end()) {
      events.push_back({WarningEvent::Kind::kCleared, step, a.since, a.text});
    }
  }
  // Kept in order of first appearance: the earlier ones first.
  std::stable_sort(
      now.begin(), now.end(),
      [](const Active& x, const Active& y) { return x.since < y.since; });
  active_ = std::move(now);
  last_step_ = step;
  return events;
}

std::vector<std::string> DistinctWarnings(
    const std::vector<std::vector<std::string>>& steps) {
  std::vector<WarningTracker::Active> seen;
  for (const std::vector<std::string>& warnings : steps) {
    for (const std::string& text : warnings) {
      const std::string key = WarningKey(text);
      auto it = FindKey(seen, key);
      if (it == seen.end()) {
        seen.push_back({key, text, 0});
      } else {
        it->text = text;
      }
    }
  }
  std::vector<std::string> texts;
  for (WarningTracker::Active& a : seen) texts.push_back(std::move(a.text));
  return texts;
}

std::string WarningsCsvField(const std::vector<std::string>& warnings) {
  const std::string field = absl::StrJoin(warnings, " | ");
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  return absl::StrCat("\"", absl::StrReplaceAll(field, {{"\"", "\"\""}}), "\"");
}

}  // namespace gradserve::client
