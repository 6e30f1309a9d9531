#include "client/graph_file.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/npy.h"
#include "core/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace gradserve::client {
namespace {

class Errors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    // Lines and columns come zero-based.
    errors.push_back(absl::StrCat("line ", line + 1, ", column ", column + 1,
                                  ": ", message));
  }
  std::vector<std::string> errors;
};

}  // namespace

absl::StatusOr<gradserve::v1::Graph> ParseGraph(absl::string_view text,
                                                const std::string& path) {
  gradserve::v1::Graph graph;
  if (absl::EndsWith(path, ".json")) {
    auto status =
        google::protobuf::util::JsonStringToMessage(std::string(text), &graph);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a gradserve.v1.Graph in JSON: ",
                       std::string(status.message())));
    }
    return graph;
  }
  if (absl::EndsWith(path, ".pbtxt")) {
    Errors errors;
    google::protobuf::TextFormat::Parser parser;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(std::string(text), &graph)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a gradserve.v1.Graph in text format: ",
                       absl::StrJoin(errors.errors, "; ")));
    }
    return graph;
  }
  if (IsOnnxFile(path)) {
    return absl::UnimplementedError(absl::StrCat(
        path,
        ": this command takes a gradserve graph (.json or .pbtxt), not an "
        "ONNX model (the server imports those; gradctl cannot)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      ": unknown graph format; expected .json (protobuf JSON) or .pbtxt "
      "(protobuf text)"));
}

bool IsOnnxFile(absl::string_view path) {
  return absl::EndsWith(path, ".onnx");
}

absl::StatusOr<gradserve::v1::Graph> ReadGraph(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseGraph(text, path);
}

}  // namespace gradserve::client
