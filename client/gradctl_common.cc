#include "client/gradctl_common.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/npy.h"
#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

constexpr char kExitPayload[] = "type.gradserve.dev/gradctl.exit";

std::atomic<bool> interrupt_requested{false};

void OnSignal(int signal) {
  if (interrupt_requested.exchange(true)) {
    // The second one: stop now, as the default action would.
    std::signal(signal, SIG_DFL);
    std::raise(signal);
  }
}

// The file of `flag`, whole ("" when no path is given).
absl::StatusOr<std::string> FlagFile(absl::string_view flag,
                                     const std::string& path) {
  if (path.empty()) return std::string();
  auto text = ReadFile(path);
  if (!text.ok())
    return UsageError(absl::StrCat(flag, ": ", text.status().message()));
  return text;
}

absl::Status AddSecurity(const GlobalOptions& global, ClientOptions* options) {
  if (global.tls || !global.tls_ca.empty() || !global.tls_cert.empty() ||
      !global.tls_key.empty() || !global.tls_server_name.empty()) {
    ClientTlsOptions tls;
    ASSIGN_OR_RETURN(tls.root_certs, FlagFile("--tls_ca", global.tls_ca));
    ASSIGN_OR_RETURN(tls.cert_chain, FlagFile("--tls_cert", global.tls_cert));
    ASSIGN_OR_RETURN(tls.private_key, FlagFile("--tls_key", global.tls_key));
    tls.server_name = global.tls_server_name;
    options->tls = std::move(tls);
  }
  if (!global.token_file.empty()) {
    ASSIGN_OR_RETURN(std::string text,
                     FlagFile("--token_file", global.token_file));
    options->token = std::string(absl::StripAsciiWhitespace(
        absl::string_view(text).substr(0, text.find('\n'))));
    if (options->token.empty()) {
      return UsageError(
          absl::StrCat("--token_file: ", global.token_file, " holds no token"));
    }
  } else if (const char* token = std::getenv("GRADSERVE_TOKEN")) {
    options->token = token;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Context::Connect(
    std::optional<absl::Duration> timeout) const {
  ClientOptions options;
  options.target = global.server;
  options.timeout = timeout.value_or(absl::Seconds(global.timeout));
  RETURN_IF_ERROR(AddSecurity(global, &options));
  auto client = Client::Create(options);
  if (!client.ok()) return UsageError(client.status().message());
  return client;
}

absl::Status UsageError(absl::string_view message) {
  return ExitWith(kExitUsage, message);
}

absl::Status ExitWith(int code, absl::string_view message) {
  absl::Status status(absl::StatusCode::kCancelled, message);
  status.SetPayload(kExitPayload, absl::Cord(absl::StrCat(code)));
  return status;
}

int ExitCodeOf(const absl::Status& status) {
  if (status.ok()) return 0;
  auto payload = status.GetPayload(kExitPayload);
  int code;
  if (payload.has_value() && absl::SimpleAtoi(std::string(*payload), &code)) {
    return code;
  }
  return kExitError;
}

void PrintError(std::ostream& err, const absl::Status& status) {
  if (status.ok() || status.message().empty()) return;
  err << "error: ";
  if (FromServer(status))
    err << absl::StatusCodeToString(status.code()) << ": ";
  err << status.message() << "\n";
}

absl::Status Annotate(const absl::Status& status, absl::string_view prefix) {
  absl::Status annotated(status.code(),
                         absl::StrCat(prefix, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

InterruptGuard::InterruptGuard() {
  interrupt_requested = false;
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int_);
  sigaction(SIGTERM, &action, &old_term_);
}

InterruptGuard::~InterruptGuard() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

const std::atomic<bool>& InterruptGuard::requested() {
  return interrupt_requested;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    const std::string& arg, absl::string_view flag) {
  std::pair<std::string, std::string> kv =
      absl::StrSplit(arg, absl::MaxSplits('=', 1));
  if (kv.first.empty() || arg.find('=') == std::string::npos) {
    return UsageError(absl::StrCat(flag, " takes NAME=VALUE, got '", arg, "'"));
  }
  return kv;
}

absl::Status ParseInputShape(const std::string& arg, pb::DescribeRequest* r) {
  ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, "--input"));
  std::pair<std::string, std::string> spec =
      absl::StrSplit(kv.second, absl::MaxSplits(':', 1));
  pb::TensorShape& shape = (*r->mutable_input_shapes())[kv.first];
  if (spec.second == "int64") {
    shape.set_dtype(pb::DATA_TYPE_INT64);
  } else if (spec.second == "float32" || spec.second.empty()) {
    shape.set_dtype(pb::DATA_TYPE_FLOAT32);
  } else {
    return UsageError(absl::StrCat("--input ", arg,
                                   ": dtype must be float32 or int64, got '",
                                   spec.second, "'"));
  }
  for (absl::string_view d :
       absl::StrSplit(spec.first, ',', absl::SkipEmpty())) {
    int64_t dim;
    if (!absl::SimpleAtoi(d, &dim)) {
      return UsageError(
          absl::StrCat("--input ", arg, ": '", d, "' is not a dimension"));
    }
    shape.add_dims(dim);
  }
  return absl::OkStatus();
}

absl::Status ReadTensors(const std::vector<std::string>& args,
                         absl::string_view flag,
                         google::protobuf::Map<std::string, pb::Tensor>* out) {
  for (const std::string& arg : args) {
    ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, flag));
    ASSIGN_OR_RETURN((*out)[kv.first], ReadNpy(kv.second));
  }
  return absl::OkStatus();
}

void AddArrays(const google::protobuf::Map<std::string, pb::Tensor>& m,
               const std::string& prefix, Arrays* arrays) {
  for (const auto& [name, t] : m) (*arrays)[prefix + name] = t;
}

std::string TypeName(pb::DataType dtype) {
  switch (dtype) {
    case pb::DATA_TYPE_FLOAT32:
      return "float32";
    case pb::DATA_TYPE_INT64:
      return "int64";
    case pb::DATA_TYPE_BFLOAT16:
      return "bfloat16";
    case pb::DATA_TYPE_FLOAT64:
      return "float64";
    default:
      return "?";
  }
}

std::string DimsToString(const google::protobuf::RepeatedField<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

std::vector<double> Values(const pb::Tensor& t) {
  std::vector<double> v;
  if (t.dtype() == pb::DATA_TYPE_INT64) {
    if (t.int64_values_size() > 0) {
      v.assign(t.int64_values().begin(), t.int64_values().end());
      return v;
    }
    std::vector<int64_t> raw(t.data().size() / sizeof(int64_t));
    std::memcpy(raw.data(), t.data().data(), raw.size() * sizeof(int64_t));
    v.assign(raw.begin(), raw.end());
  } else if (t.dtype() == pb::DATA_TYPE_FLOAT32) {
    if (t.float_values_size() > 0) {
      v.assign(t.float_values().begin(), t.float_values().end());
      return v;
    }
    std::vector<float> raw(t.data().size() / sizeof(float));
    std::memcpy(raw.data(), t.data().data(), raw.size() * sizeof(float));
    v.assign(raw.begin(), raw.end());
  }
  return v;
}

namespace {

void PrintTensor(std::ostream& out, const std::string& name,
                 const pb::Tensor& t) {
  std::vector<double> v = Values(t);
  out << "  " << std::left << std::setw(16) << name << " " << std::setw(8)
      << TypeName(t.dtype()) << " " << std::setw(14) << DimsToString(t.shape());
  if (v.size() == 1) {
    out << " " << v[0] << "\n";
    return;
  }
  if (!v.empty()) {
    double sum = 0;
    for (double x : v) sum += x;
    out << " min " << *std::min_element(v.begin(), v.end()) << "  max "
        << *std::max_element(v.begin(), v.end()) << "  mean " << sum / v.size()
        << "  [";
    for (size_t i = 0; i < std::min<size_t>(v.size(), 4); ++i) {
      out << (i ? ", " : "") << v[i];
    }
    out << (v.size() > 4 ? ", ...]" : "]");
  }
  out << "\n";
}

}  // namespace

void PrintSection(std::ostream& out, const std::string& title,
                  const google::protobuf::Map<std::string, pb::Tensor>& m) {
  if (m.empty()) return;
  out << title << ":\n";
  std::map<std::string, const pb::Tensor*> sorted;
  for (const auto& [name, t] : m) sorted[name] = &t;
  for (const auto& [name, t] : sorted) PrintTensor(out, name, *t);
}

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

std::string Fingerprint(absl::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ull;
  return absl::StrCat(absl::Hex(hash, absl::kZeroPad16));
}

void AddGraphOption(CLI::App& command, std::string* graph, bool required) {
  CLI::Option* option =
      command.add_option("--graph", *graph,
                         "model file: a graph in protobuf JSON (.json) or text "
                         "(.pbtxt), or an ONNX model (.onnx)");
  if (required) option->required();
}

}  // namespace gradserve::client

namespace gradserve::client {

namespace pb = ::gradserve::v1;

Arrays SessionArrays(const pb::GetParametersResponse& state) {
  Arrays arrays;
  AddArrays(state.parameters(), "parameters/", &arrays);
  AddArrays(state.buffers(), "buffers/", &arrays);
  AddArrays(state.optimizer_state(), "optimizer_state/", &arrays);
  arrays["step"] = Int64Scalar(state.step());
  return arrays;
}

absl::StatusOr<pb::SetParametersRequest> RestoreRequest(
    const Arrays& arrays, const std::string& session_id, bool strict,
    const std::string& what) {
  pb::SetParametersRequest request;
  request.set_session_id(session_id);
  for (const auto& [key, t] : arrays) {
    absl::string_view name = key;
    if (absl::ConsumePrefix(&name, "parameters/")) {
      (*request.mutable_parameters())[std::string(name)] = t;
    } else if (absl::ConsumePrefix(&name, "buffers/")) {
      (*request.mutable_buffers())[std::string(name)] = t;
    } else if (absl::ConsumePrefix(&name, "optimizer_state/")) {
      (*request.mutable_optimizer_state())[std::string(name)] = t;
    } else if (key == "step") {
      ASSIGN_OR_RETURN(int64_t step, ScalarInt64(t, what + ": step"));
      request.set_step(step);
    } else if (strict) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": array '", key,
                       "' is none of parameters/NAME, buffers/NAME, "
                       "optimizer_state/NAME/STATE or step"));
    }
  }
  return request;
}

pb::Tensor Int64Scalar(int64_t v) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_INT64);
  t.set_data(&v, sizeof(v));
  return t;
}

absl::StatusOr<int64_t> ScalarInt64(const pb::Tensor& t,
                                    const std::string& what) {
  if (t.dtype() != pb::DATA_TYPE_INT64 || t.shape_size() != 0 ||
      t.data().size() != sizeof(int64_t)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not an int64 scalar"));
  }
  int64_t v;
  std::memcpy(&v, t.data().data(), sizeof(v));
  return v;
}

}  // namespace gradserve::client
