// gradctl train --diagnostics: the Diagnostics warnings of the diagnosed
// steps, followed across the run so that a warning repeated step after step
// is told once, when it first appears, and again when it clears.
#ifndef GRADSERVE_CLIENT_TRAIN_WARNINGS_H_
#define GRADSERVE_CLIENT_TRAIN_WARNINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gradserve::client {

// What identifies a warning from step to step: its text with the numbers
// outside quoted names replaced by '#', so that "node 'relu1': 63% of ReLU
// units are dead" and "node 'relu1': 70% of ..." are the same warning, and
// one about 'relu2' another.
std::string WarningKey(absl::string_view warning);

struct WarningEvent {
  enum class Kind { kAppeared, kCleared };
  Kind kind = Kind::kAppeared;
  int64_t step = 0;   // the diagnosed step that showed the change
  int64_t since = 0;  // the step the warning first appeared at
  std::string text;   // cleared: its text when last seen
};

// "step 3: warning: <text>", "step 41: cleared (warned since step 1): <text>".
std::string FormatWarningEvent(const WarningEvent& event);

class WarningTracker {
 public:
  struct Active {
    std::string key, text;  // text: as last seen
    int64_t since = 0;
  };

  // The warnings of diagnosed step `step` (steps in increasing order): the
  // warnings new since the previous diagnosed step (in the step's order),
  // then those no longer given (in order of appearance).
  std::vector<WarningEvent> Observe(int64_t step,
                                    const std::vector<std::string>& warnings);
  // The warnings of the last diagnosed step, in order of first appearance.
  const std::vector<Active>& active() const { return active_; }
  // The last diagnosed step (0: none yet).
  int64_t last_step() const { return last_step_; }

 private:
  std::vector<Active> active_;
  int64_t last_step_ = 0;
};

// The distinct warnings (by WarningKey) of a list of steps' warnings, each
// with its last text, in order of first appearance.
std::vector<std::string> DistinctWarnings(
    const std::vector<std::vector<std::string>>& steps);

// Warnings as one CSV field: joined with " | ", quoted when they hold a
// comma, a quote or a line break (RFC 4180).
std::string WarningsCsvField(const std::vector<std::string>& warnings);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_TRAIN_WARNINGS_H_
