// What `gradctl train` records: per-step and per-epoch metrics, as CSV, as
// checkpoint arrays (so a resumed run carries its whole history), and as
// the SVG of its loss and accuracy curves.
#ifndef GRADSERVE_CLIENT_TRAIN_HISTORY_H_
#define GRADSERVE_CLIENT_TRAIN_HISTORY_H_

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/npz.h"

namespace gradserve::client {

struct StepRecord {
  int64_t step = 0;   // 1-based, as the session counts
  int64_t epoch = 0;  // 1-based
  int64_t batch = 0;  // 0-based within the epoch
  double lr = 0;
  float loss = 0;  // NaN when the reply was lost (the step still applied)
  double grad_norm = 0;
  int64_t correct = -1;  // -1: no --accuracy-of
  int64_t samples = 0;
  // With --diagnostics: whether the step asked for Diagnostics, and the
  // warnings they gave.
  bool diagnosed = false;
  std::vector<std::string> warnings;
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  int64_t step = 0;   // the session's step at its end
  // NaN when not measured (no validation set, no --accuracy-of).
  double train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0;
  double lr = 0, seconds = 0;
  // The distinct warnings of its diagnosed steps (DistinctWarnings).
  std::vector<std::string> warnings;
};

struct History {
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
};

// "train/steps/..." and "train/epochs/..." arrays (doubles kept bit for bit
// as int64 arrays named "..._f64bits": view them with .view(np.float64);
// each record's warnings, joined by line breaks, as "..._utf8" int64 arrays:
// the records' byte lengths, then the bytes packed 8 to an element).
// Checkpoints from before --diagnostics (no such arrays) read as runs
// without it.
void AddHistoryArrays(const History& history, Arrays* arrays);
absl::StatusOr<History> HistoryFromArrays(const Arrays& arrays,
                                          const std::string& what);

std::string StepCsvHeader();
std::string StepCsvRow(const StepRecord& s);
std::string EpochCsvHeader();
std::string EpochCsvRow(const EpochRecord& e);

// A CSV file written as rows come: the header and `rows` first (the whole
// history, when resuming), then one Append (flushed) at a time.
class CsvLog {
 public:
  static absl::StatusOr<std::unique_ptr<CsvLog>> Create(
      const std::string& path, const std::string& header,
      const std::vector<std::string>& rows);
  absl::Status Append(const std::string& row);

 private:
  explicit CsvLog(std::string path) : path_(std::move(path)) {}
  const std::string path_;
  std::ofstream out_;
};

// The loss panel (per step and per epoch, train and validation) and, with
// accuracies, the accuracy panel, against epochs (a step at its fraction of
// its epoch).
std::string TrainingCurvesSvg(const History& history, int64_t steps_per_epoch,
                              const std::string& title);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_TRAIN_HISTORY_H_
