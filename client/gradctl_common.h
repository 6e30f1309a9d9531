// What gradctl's commands share: the command interface that gradctl.cc
// registers, exit codes and how errors print, Ctrl-C handling, and helpers
// for flags, tensors and files.
#ifndef GRADSERVE_CLIENT_GRADCTL_COMMON_H_
#define GRADSERVE_CLIENT_GRADCTL_COMMON_H_

#include <atomic>
#include <csignal>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/npz.h"
#include "gradserve/v1/gradient_service.pb.h"

namespace gradserve::client {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

struct GlobalOptions {
  std::string server = "localhost:50051";
  double timeout = 60;
  // TLS: on with --tls or any of the files; PEM file paths.
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  // The bearer token: this file's first line, else $GRADSERVE_TOKEN.
  std::string token_file;
};

struct Context {
  const GlobalOptions& global;
  std::ostream& out;
  std::ostream& err;
  bool tty = false;  // `out` is a terminal (progress bars)

  // A client for --server; calls time out after --timeout, or `timeout`.
  absl::StatusOr<std::unique_ptr<Client>> Connect(
      std::optional<absl::Duration> timeout = std::nullopt) const;
};

class Command {
 public:
  virtual ~Command() = default;
  // Runs with the options parsed; ExitCodeOf(status) is gradctl's exit code.
  virtual absl::Status Run(Context& context) = 0;
};

// Adds a command's options to its subcommand and returns the command, which
// the options write into.
using DefineCommand = std::unique_ptr<Command> (*)(CLI::App& app);

// A usage error (exit 2): a flag's value is malformed or flags conflict.
absl::Status UsageError(absl::string_view message);
// Ends gradctl with `code`, printing `message` (when not empty) to stderr.
absl::Status ExitWith(int code, absl::string_view message = "");
int ExitCodeOf(const absl::Status& status);
// "error: CODE: message" for a status the server (or the transport) gave,
// "error: message" for local ones (files, flags); nothing for ExitWith("").
void PrintError(std::ostream& err, const absl::Status& status);
// `prefix: message`, keeping the status's code and where it came from.
absl::Status Annotate(const absl::Status& status, absl::string_view prefix);

// Set by SIGINT/SIGTERM while an InterruptGuard lives: long commands stop
// starting work, finish what is in flight, save, and exit 130. A second
// signal ends the process at once.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  static const std::atomic<bool>& requested();

 private:
  struct sigaction old_int_, old_term_;
};

// "NAME=VALUE" -> {NAME, VALUE}; a usage error naming `flag` otherwise.
absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    const std::string& arg, absl::string_view flag);
// --input NAME=D1,D2,...[:int64] into a request's input_shapes.
absl::Status ParseInputShape(const std::string& arg,
                             gradserve::v1::DescribeRequest* r);
// --feed/--grad NAME=FILE.npy into a map of tensors.
absl::Status ReadTensors(
    const std::vector<std::string>& args, absl::string_view flag,
    google::protobuf::Map<std::string, gradserve::v1::Tensor>* out);
// Arrays for an .npz from a proto map, each name given `prefix`.
void AddArrays(
    const google::protobuf::Map<std::string, gradserve::v1::Tensor>& m,
    const std::string& prefix, Arrays* arrays);

std::string TypeName(gradserve::v1::DataType dtype);
std::string DimsToString(const google::protobuf::RepeatedField<int64_t>& dims);
// Values of a float32 or int64 tensor as doubles.
std::vector<double> Values(const gradserve::v1::Tensor& t);
void PrintSection(
    std::ostream& out, const std::string& title,
    const google::protobuf::Map<std::string, gradserve::v1::Tensor>& m);

// A message's bytes with map entries in a fixed order (for fingerprints).
std::string DeterministicBytes(const google::protobuf::Message& message);

// A fingerprint of bytes (64-bit FNV-1a, hex), for telling runs apart.
std::string Fingerprint(absl::string_view bytes);

// Options every command that runs a graph takes.
void AddGraphOption(CLI::App& command, std::string* graph, bool required);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_COMMON_H_

namespace gradserve::client {

// A session's state as .npz arrays: "parameters/NAME", "buffers/NAME",
// "optimizer_state/PARAM/STATE" and "step" (int64 scalar), as
// `gradctl sessions get`, `train --save` and checkpoints write it.
Arrays SessionArrays(const gradserve::v1::GetParametersResponse& state);
// The SetParametersRequest that restores such arrays (other keys are left
// to the caller; an unknown prefix is an error naming the key when
// `strict`).
absl::StatusOr<gradserve::v1::SetParametersRequest> RestoreRequest(
    const Arrays& arrays, const std::string& session_id, bool strict,
    const std::string& what);
// An int64 scalar tensor, and back (an error naming `what` unless it is one).
gradserve::v1::Tensor Int64Scalar(int64_t v);
absl::StatusOr<int64_t> ScalarInt64(const gradserve::v1::Tensor& t,
                                    const std::string& what);

}  // namespace gradserve::client
