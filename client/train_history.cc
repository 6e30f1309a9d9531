#include "client/train_history.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/gradctl_common.h"
#include "client/svg_plot.h"
#include "client/train_warnings.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

pb::Tensor Vector(pb::DataType dtype, const void* data, size_t n, size_t item) {
  pb::Tensor t;
  t.set_dtype(dtype);
  t.add_shape(static_cast<int64_t>(n));
  t.set_data(data, n * item);
  return t;
}

pb::Tensor Int64s(const std::vector<int64_t>& v) {
  return Vector(pb::DATA_TYPE_INT64, v.data(), v.size(), sizeof(int64_t));
}

pb::Tensor Floats(const std::vector<float>& v) {
  return Vector(pb::DATA_TYPE_FLOAT32, v.data(), v.size(), sizeof(float));
}

// Doubles bit for bit in an int64 array.
pb::Tensor DoubleBits(const std::vector<double>& v) {
  return Vector(pb::DATA_TYPE_INT64, v.data(), v.size(), sizeof(double));
}

template <typename T>
absl::StatusOr<std::vector<T>> Read(const Arrays& arrays,
                                    const std::string& key, pb::DataType dtype,
                                    size_t n, const std::string& what) {
  auto it = arrays.find(key);
  if (it == arrays.end() || it->second.dtype() != dtype ||
      it->second.data().size() != n * sizeof(T)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": array '", key, "' is missing or not ", n, " values"));
  }
  std::vector<T> v(n);
  if (n > 0) std::memcpy(v.data(), it->second.data().data(), n * sizeof(T));
  return v;
}

// Each record's lines joined by '\n': the byte lengths, then the bytes packed
// 8 to an int64.
pb::Tensor Texts(const std::vector<std::vector<std::string>>& records) {
  std::vector<int64_t> words;
  std::string bytes;
  for (const std::vector<std::string>& lines : records) {
    const std::string text = absl::StrJoin(lines, "\n");
    words.push_back(static_cast<int64_t>(text.size()));
    bytes += text;
  }
  const size_t head = words.size();
  words.resize(head + (bytes.size() + 7) / 8, 0);
  // No records and no bytes: words.data() may be null, which memcpy must
  // not be given even for 0 bytes (UBSan's finding under gradctl train).
  if (!bytes.empty()) {
    std::memcpy(words.data() + head, bytes.data(), bytes.size());
  }
  return Int64s(words);
}

// Texts' records; `n` empty ones when the array is absent (a checkpoint
// from before --diagnostics).
absl::StatusOr<std::vector<std::vector<std::string>>> ReadTexts(
    const Arrays& arrays, const std::string& key, size_t n,
    const std::string& what) {
  std::vector<std::vector<std::string>> records(n);
  auto it = arrays.find(key);
  if (it == arrays.end()) return records;
  const std::string& data = it->second.data();
  const size_t words = data.size() / sizeof(int64_t);
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": array '", key, "' is malformed"));
  };
  if (it->second.dtype() != pb::DATA_TYPE_INT64 || words < n) return bad();
  std::vector<int64_t> lengths(n);
  if (n > 0) std::memcpy(lengths.data(), data.data(), n * sizeof(int64_t));
  const char* bytes = data.data() + n * sizeof(int64_t);
  const size_t available = (words - n) * sizeof(int64_t);
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    if (lengths[i] < 0 || static_cast<size_t>(lengths[i]) > available - at) {
      return bad();
    }
    if (lengths[i] > 0) {
      records[i] =
          absl::StrSplit(absl::string_view(bytes + at, lengths[i]), '\n');
    }
    at += lengths[i];
  }
  return records;
}

size_t Length(const Arrays& arrays, const std::string& key) {
  auto it = arrays.find(key);
  return it == arrays.end() || it->second.shape_size() != 1
             ? 0
             : static_cast<size_t>(it->second.shape(0));
}

std::string G(double v) {
  if (std::isnan(v)) return "";
  return absl::StrFormat("%.9g", v);
}

}  // namespace

void AddHistoryArrays(const History& h, Arrays* arrays) {
  std::vector<int64_t> step, epoch, batch, correct, samples, diagnosed;
  std::vector<float> loss;
  std::vector<double> lr, norm;
  std::vector<std::vector<std::string>> step_warnings, epoch_warnings;
  for (const StepRecord& s : h.steps) {
    diagnosed.push_back(s.diagnosed);
    step_warnings.push_back(s.warnings);
    step.push_back(s.step);
    epoch.push_back(s.epoch);
    batch.push_back(s.batch);
    correct.push_back(s.correct);
    samples.push_back(s.samples);
    loss.push_back(s.loss);
    lr.push_back(s.lr);
    norm.push_back(s.grad_norm);
  }
  Arrays& a = *arrays;
  a["train/steps/step"] = Int64s(step);
  a["train/steps/epoch"] = Int64s(epoch);
  a["train/steps/batch"] = Int64s(batch);
  a["train/steps/correct"] = Int64s(correct);
  a["train/steps/samples"] = Int64s(samples);
  a["train/steps/loss"] = Floats(loss);
  a["train/steps/lr_f64bits"] = DoubleBits(lr);
  a["train/steps/grad_norm_f64bits"] = DoubleBits(norm);
  a["train/steps/diagnosed"] = Int64s(diagnosed);
  a["train/steps/warnings_utf8"] = Texts(step_warnings);
  std::vector<int64_t> e_epoch, e_step;
  std::vector<double> fields[6];
  for (const EpochRecord& e : h.epochs) {
    e_epoch.push_back(e.epoch);
    e_step.push_back(e.step);
    epoch_warnings.push_back(e.warnings);
    const double values[6] = {e.train_loss, e.train_accuracy,
                              e.val_loss,   e.val_accuracy,
                              e.lr,         e.seconds};
    for (int i = 0; i < 6; ++i) fields[i].push_back(values[i]);
  }
  a["train/epochs/epoch"] = Int64s(e_epoch);
  a["train/epochs/step"] = Int64s(e_step);
  a["train/epochs/warnings_utf8"] = Texts(epoch_warnings);
  const char* names[6] = {"train_loss", "train_accuracy",
                          "val_loss",   "val_accuracy",
                          "lr",         "seconds"};
  for (int i = 0; i < 6; ++i) {
    a[absl::StrCat("train/epochs/", names[i], "_f64bits")] =
        DoubleBits(fields[i]);
  }
}

absl::StatusOr<History> HistoryFromArrays(const Arrays& a,
                                          const std::string& what) {
  History h;
  const size_t n = Length(a, "train/steps/step");
  const auto I = pb::DATA_TYPE_INT64;
  ASSIGN_OR_RETURN(auto step, Read<int64_t>(a, "train/steps/step", I, n, what));
  ASSIGN_OR_RETURN(auto epoch,
                   Read<int64_t>(a, "train/steps/epoch", I, n, what));
  ASSIGN_OR_RETURN(auto batch,
                   Read<int64_t>(a, "train/steps/batch", I, n, what));
  ASSIGN_OR_RETURN(auto correct,
                   Read<int64_t>(a, "train/steps/correct", I, n, what));
  ASSIGN_OR_RETURN(auto samples,
                   Read<int64_t>(a, "train/steps/samples", I, n, what));
  ASSIGN_OR_RETURN(auto loss, Read<float>(a, "train/steps/loss",
                                          pb::DATA_TYPE_FLOAT32, n, what));
  ASSIGN_OR_RETURN(auto lr,
                   Read<double>(a, "train/steps/lr_f64bits", I, n, what));
  ASSIGN_OR_RETURN(
      auto norm, Read<double>(a, "train/steps/grad_norm_f64bits", I, n, what));
  std::vector<int64_t> diagnosed(n, 0);
  if (a.count("train/steps/diagnosed")) {
    ASSIGN_OR_RETURN(diagnosed,
                     Read<int64_t>(a, "train/steps/diagnosed", I, n, what));
  }
  ASSIGN_OR_RETURN(auto warnings,
                   ReadTexts(a, "train/steps/warnings_utf8", n, what));
  for (size_t i = 0; i < n; ++i) {
    h.steps.push_back({step[i], epoch[i], batch[i], lr[i], loss[i], norm[i],
                       correct[i], samples[i], diagnosed[i] != 0,
                       std::move(warnings[i])});
  }
  const size_t m = Length(a, "train/epochs/epoch");
  ASSIGN_OR_RETURN(auto e_epoch,
                   Read<int64_t>(a, "train/epochs/epoch", I, m, what));
  ASSIGN_OR_RETURN(auto e_step,
                   Read<int64_t>(a, "train/epochs/step", I, m, what));
  const char* names[6] = {"train_loss", "train_accuracy",
                          "val_loss",   "val_accuracy",
                          "lr",         "seconds"};
  std::vector<double> fields[6];
  for (int i = 0; i < 6; ++i) {
    ASSIGN_OR_RETURN(
        fields[i],
        Read<double>(a, absl::StrCat("train/epochs/", names[i], "_f64bits"), I,
                     m, what));
  }
  ASSIGN_OR_RETURN(auto e_warnings,
                   ReadTexts(a, "train/epochs/warnings_utf8", m, what));
  for (size_t i = 0; i < m; ++i) {
    h.epochs.push_back({e_epoch[i], e_step[i], fields[0][i], fields[1][i],
                        fields[2][i], fields[3][i], fields[4][i], fields[5][i],
                        std::move(e_warnings[i])});
  }
  return h;
}

std::string StepCsvHeader() {
  return "step,epoch,batch,lr,loss,grad_norm,accuracy,warnings";
}

std::string StepCsvRow(const StepRecord& s) {
  return absl::StrCat(
      s.step, ",", s.epoch, ",", s.batch, ",", G(s.lr), ",", G(s.loss), ",",
      G(s.grad_norm), ",",
      s.correct < 0 || s.samples == 0
          ? ""
          : G(static_cast<double>(s.correct) / static_cast<double>(s.samples)),
      ",", WarningsCsvField(s.warnings));
}

std::string EpochCsvHeader() {
  return "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,"
         "seconds,warnings";
}

std::string EpochCsvRow(const EpochRecord& e) {
  return absl::StrCat(
      e.epoch, ",", e.step, ",", G(e.lr), ",", G(e.train_loss), ",",
      G(e.train_accuracy), ",", G(e.val_loss), ",", G(e.val_accuracy), ",",
      absl::StrFormat("%.3f", e.seconds), ",", WarningsCsvField(e.warnings));
}

absl::StatusOr<std::unique_ptr<CsvLog>> CsvLog::Create(
    const std::string& path, const std::string& header,
    const std::vector<std::string>& rows) {
  std::unique_ptr<CsvLog> log(new CsvLog(path));
  log->out_.open(path, std::ios::trunc);
  log->out_ << header << "\n";
  for (const std::string& row : rows) log->out_ << row << "\n";
  log->out_.flush();
  if (!log->out_) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  }
  return log;
}

absl::Status CsvLog::Append(const std::string& row) {
  out_ << row << "\n";
  out_.flush();
  if (!out_) {
    return absl::PermissionDeniedError(absl::StrCat(path_, ": cannot write"));
  }
  return absl::OkStatus();
}

namespace {

// At most ~2000 points: means of equal runs of steps.
std::vector<std::pair<double, double>> Thinned(
    const std::vector<std::pair<double, double>>& points) {
  const size_t per = points.size() / 2000 + 1;
  if (per == 1) return points;
  std::vector<std::pair<double, double>> thin;
  for (size_t i = 0; i < points.size(); i += per) {
    double x = 0, y = 0;
    size_t n = 0;
    for (size_t j = i; j < std::min(points.size(), i + per); ++j, ++n) {
      x += points[j].first;
      y += points[j].second;
    }
    thin.emplace_back(x / n, y / n);
  }
  return thin;
}

Series EpochSeries(const History& h, const std::string& name,
                   const std::string& id, const std::string& color,
                   const std::function<double(const EpochRecord&)>& field) {
  Series s{name, id, color, {}, 2.5, true};
  for (const EpochRecord& e : h.epochs) {
    if (!std::isnan(field(e))) s.points.emplace_back(e.epoch, field(e));
  }
  return s;
}

}  // namespace

std::string TrainingCurvesSvg(const History& h, int64_t steps_per_epoch,
                              const std::string& title) {
  Panel loss{"Loss", "epoch", "loss", {}};
  std::vector<std::pair<double, double>> per_step;
  for (const StepRecord& s : h.steps) {
    per_step.emplace_back(
        s.epoch - 1 +
            static_cast<double>(s.batch + 1) /
                static_cast<double>(std::max<int64_t>(steps_per_epoch, 1)),
        s.loss);
  }
  loss.series.push_back({"train (each step)", "train-loss-step", "#9ecae1",
                         Thinned(per_step), 1});
  loss.series.push_back(EpochSeries(h, "train (epoch mean)", "train-loss",
                                    "#1f77b4",
                                    [](auto& e) { return e.train_loss; }));
  loss.series.push_back(EpochSeries(h, "validation", "val-loss", "#d62728",
                                    [](auto& e) { return e.val_loss; }));
  std::vector<Panel> panels = {loss};
  Panel accuracy{"Accuracy", "epoch", "accuracy", {}};
  accuracy.series.push_back(
      EpochSeries(h, "train", "train-accuracy", "#1f77b4",
                  [](auto& e) { return e.train_accuracy; }));
  accuracy.series.push_back(
      EpochSeries(h, "validation", "val-accuracy", "#d62728",
                  [](auto& e) { return e.val_accuracy; }));
  // From a tenth below the lowest accuracy to 100%.
  double lowest = 1;
  for (const Series& s : accuracy.series) {
    for (const auto& [x, y] : s.points) lowest = std::min(lowest, y);
  }
  accuracy.fixed_y = true;
  accuracy.y_min = std::max(0.0, std::floor(lowest * 10 - 1e-9) / 10);
  accuracy.y_max = 1;
  accuracy.percent = true;
  if (!accuracy.series[0].points.empty() ||
      !accuracy.series[1].points.empty()) {
    panels.push_back(accuracy);
  }
  return RenderSvg(title, panels);
}

}  // namespace gradserve::client
