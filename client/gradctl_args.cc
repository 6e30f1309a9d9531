#include "client/gradctl_args.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/npy.h"
#include "core/status_macros.h"

namespace gradserve::client {

absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    const std::string& arg, absl::string_view flag) {
  std::pair<std::string, std::string> kv =
      absl::StrSplit(arg, absl::MaxSplits('=', 1));
  if (kv.first.empty() || arg.find('=') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " takes NAME=VALUE, got '", arg, "'"));
  }
  return kv;
}

absl::Status ReadTensors(
    const std::vector<std::string>& args, absl::string_view flag,
    google::protobuf::Map<std::string, gradserve::v1::Tensor>* out) {
  for (const std::string& arg : args) {
    ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, flag));
    ASSIGN_OR_RETURN((*out)[kv.first], ReadNpy(kv.second));
  }
  return absl::OkStatus();
}

}  // namespace gradserve::client
