// Model files for the CLI: gradserve graphs in protobuf JSON (.json) or text
// format (.pbtxt), and ONNX models (.onnx), which the server imports.
#ifndef GRADSERVE_CLIENT_GRAPH_FILE_H_
#define GRADSERVE_CLIENT_GRAPH_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/npy.h"
#include "gradserve/v1/graph.pb.h"

namespace gradserve::client {

bool IsOnnxFile(absl::string_view path);

// Parses `text` as the format its file name's extension says; errors name
// the file (and the line and column, for text format).
absl::StatusOr<gradserve::v1::Graph> ParseGraph(absl::string_view text,
                                                const std::string& path);
absl::StatusOr<gradserve::v1::Graph> ReadGraph(const std::string& path);

// Reads the model `path` names into a request's `model` oneof: `graph`, or
// `onnx_model` (the file's bytes) for a .onnx file.
template <typename Request>
absl::Status ReadModel(const std::string& path, Request* request) {
  if (IsOnnxFile(path)) {
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    request->set_onnx_model(*std::move(bytes));
    return absl::OkStatus();
  }
  auto graph = ReadGraph(path);
  if (!graph.ok()) return graph.status();
  *request->mutable_graph() = *std::move(graph);
  return absl::OkStatus();
}

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRAPH_FILE_H_
