// Graph files for the CLI: protobuf JSON (.json) or text format (.pbtxt).
#ifndef GRADSERVE_CLIENT_GRAPH_FILE_H_
#define GRADSERVE_CLIENT_GRAPH_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gradserve/v1/graph.pb.h"

namespace gradserve::client {

// Parses `text` as the format its file name's extension says; errors name
// the file (and the line and column, for text format).
absl::StatusOr<gradserve::v1::Graph> ParseGraph(absl::string_view text,
                                                const std::string& path);
absl::StatusOr<gradserve::v1::Graph> ReadGraph(const std::string& path);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRAPH_FILE_H_
