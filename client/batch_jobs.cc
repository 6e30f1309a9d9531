#include "client/batch_jobs.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/gradctl_common.h"
#include "client/npy.h"
#include "core/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;
using google::protobuf::Struct;
using google::protobuf::Value;

class DataSetJobs : public BatchJobs {
 public:
  DataSetJobs(Dataset data, FeedMap feeds, int64_t batch)
      : data_(std::move(data)), feeds_(std::move(feeds)), batch_(batch) {}

  int64_t size() const override {
    return (data_.samples + batch_ - 1) / batch_;
  }

  absl::StatusOr<pb::ComputeRequest> Request(int64_t i,
                                             const pb::ComputeRequest& base,
                                             int64_t* samples) const override {
    pb::ComputeRequest request = base;
    const int64_t begin = i * batch_;
    const int64_t end = std::min(data_.samples, begin + batch_);
    FeedRows(data_, feeds_, begin, end, request.mutable_feeds());
    *samples = end - begin;
    return request;
  }

  std::string Identity() const override {
    std::string id =
        absl::StrCat("data batch=", batch_, " samples=", data_.samples);
    for (const auto& [input, array] : feeds_) {
      const pb::Tensor& t = data_.arrays.at(array);
      absl::StrAppend(&id, " ", input, "=", array, ":", t.dtype(), ":",
                      t.data().size(), ":", Fingerprint(t.data()));
    }
    return id;
  }

 private:
  const Dataset data_;
  const FeedMap feeds_;
  const int64_t batch_;
};

struct ManifestLine {
  Struct fields;
  int line = 0;
};

class Manifest : public BatchJobs {
 public:
  Manifest(std::string path, std::string text, std::vector<ManifestLine> lines)
      : path_(std::move(path)),
        dir_(std::filesystem::path(path_).parent_path()),
        text_(std::move(text)),
        lines_(std::move(lines)) {}

  int64_t size() const override { return static_cast<int64_t>(lines_.size()); }

  absl::StatusOr<pb::ComputeRequest> Request(int64_t i,
                                             const pb::ComputeRequest& base,
                                             int64_t* samples) const override {
    const ManifestLine& job = lines_[i];
    const auto& f = job.fields.fields();
    const std::string where = absl::StrCat(path_, ":", job.line);
    pb::ComputeRequest request = base;
    RETURN_IF_ERROR(
        ReadFiles(f.at("feeds"), where, "feeds", request.mutable_feeds()));
    if (f.count("seeds")) {
      RETURN_IF_ERROR(ReadFiles(f.at("seeds"), where, "seeds",
                                request.mutable_output_gradients()));
    }
    if (f.count("fetch")) {
      request.clear_fetch();
      for (const Value& v : f.at("fetch").list_value().values()) {
        request.add_fetch(v.string_value());
      }
    }
    if (f.count("wrt")) {
      request.clear_wrt();
      for (const Value& v : f.at("wrt").list_value().values()) {
        request.add_wrt(v.string_value());
      }
    }
    if (f.count("loss")) request.set_loss(f.at("loss").string_value());
    if (f.count("mode")) {
      request.set_mode(f.at("mode").string_value() == "eval" ? pb::MODE_EVAL
                                                             : pb::MODE_TRAIN);
    }
    if (f.count("seed")) {
      request.set_seed(static_cast<uint64_t>(f.at("seed").number_value()));
    }
    *samples = 0;
    if (f.count("samples")) {
      *samples = static_cast<int64_t>(f.at("samples").number_value());
    } else if (!request.feeds().empty()) {
      // The first feed by name, as the manifest's object order is lost.
      std::string first = request.feeds().begin()->first;
      for (const auto& [name, t] : request.feeds())
        first = std::min(first, name);
      const pb::Tensor& t = request.feeds().at(first);
      *samples = t.shape_size() > 0 ? t.shape(0) : 1;
    }
    return request;
  }

  std::string Identity() const override {
    return absl::StrCat("manifest ", path_, " ", Fingerprint(text_));
  }

 private:
  absl::Status ReadFiles(
      const Value& files, const std::string& where, absl::string_view key,
      google::protobuf::Map<std::string, pb::Tensor>* out) const {
    for (const auto& [name, file] : files.struct_value().fields()) {
      std::filesystem::path p(file.string_value());
      if (p.is_relative()) p = dir_ / p;
      auto tensor = ReadNpy(p.string());
      if (!tensor.ok()) {
        return Annotate(tensor.status(),
                        absl::StrCat(where, ": ", key, ".", name));
      }
      (*out)[name] = *std::move(tensor);
    }
    return absl::OkStatus();
  }

  const std::string path_;
  const std::filesystem::path dir_;
  const std::string text_;
  const std::vector<ManifestLine> lines_;
};

// Checks a line's keys and their kinds up front, so that a typo stops the
// run before any call rather than at its job.
absl::Status CheckLine(const Struct& line, const std::string& where) {
  static const auto* kinds = new std::map<std::string, Value::KindCase>{
      {"feeds", Value::kStructValue}, {"seeds", Value::kStructValue},
      {"fetch", Value::kListValue},   {"wrt", Value::kListValue},
      {"loss", Value::kStringValue},  {"mode", Value::kStringValue},
      {"seed", Value::kNumberValue},  {"samples", Value::kNumberValue}};
  if (!line.fields().count("feeds")) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": a job needs \"feeds\": {\"INPUT\": \"FILE.npy\"}"));
  }
  for (const auto& [key, value] : line.fields()) {
    auto kind = kinds->find(key);
    if (kind == kinds->end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown key \"", key,
          "\" (a job has feeds, seeds, fetch, wrt, loss, mode, seed, "
          "samples)"));
    }
    if (value.kind_case() != kind->second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": \"", key, "\" has the wrong JSON type"));
    }
  }
  const auto& mode = line.fields().find("mode");
  if (mode != line.fields().end() && mode->second.string_value() != "train" &&
      mode->second.string_value() != "eval") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": \"mode\" is \"train\" or \"eval\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchJobs>> DataJobs(Dataset data, FeedMap feeds,
                                                    int64_t batch) {
  if (batch <= 0) {
    return absl::InvalidArgumentError("--batch-size must be positive");
  }
  return std::make_unique<DataSetJobs>(std::move(data), std::move(feeds),
                                       batch);
}

absl::StatusOr<std::unique_ptr<BatchJobs>> ManifestJobs(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<ManifestLine> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    ManifestLine job;
    job.line = number;
    const std::string where = absl::StrCat(path, ":", number);
    auto parsed = google::protobuf::util::JsonStringToMessage(std::string(line),
                                                              &job.fields);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": not a JSON object: ", std::string(parsed.message())));
    }
    RETURN_IF_ERROR(CheckLine(job.fields, where));
    lines.push_back(std::move(job));
  }
  if (lines.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no jobs"));
  }
  return std::make_unique<Manifest>(path, std::move(text), std::move(lines));
}

}  // namespace gradserve::client
