// Argument parsing shared by gradctl's commands.
#ifndef GRADSERVE_CLIENT_GRADCTL_ARGS_H_
#define GRADSERVE_CLIENT_GRADCTL_ARGS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "gradserve/v1/tensor.pb.h"

namespace gradserve::client {

// "NAME=VALUE" -> {NAME, VALUE}; `flag` names the option in errors.
absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    const std::string& arg, absl::string_view flag);

// --feed/--grad NAME=FILE.npy arguments into a map of tensors.
absl::Status ReadTensors(
    const std::vector<std::string>& args, absl::string_view flag,
    google::protobuf::Map<std::string, gradserve::v1::Tensor>* out);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_ARGS_H_
