#include "client/gradctl.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/graph_file.h"
#include "client/npy.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

std::string DimsToString(const google::protobuf::RepeatedField<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
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

// "NAME=VALUE" -> {NAME, VALUE}.
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

// --feed/--grad NAME=FILE.npy into a map of tensors.
absl::Status ReadTensors(const std::vector<std::string>& args,
                         absl::string_view flag,
                         google::protobuf::Map<std::string, pb::Tensor>* out) {
  for (const std::string& arg : args) {
    ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, flag));
    ASSIGN_OR_RETURN((*out)[kv.first], ReadNpy(kv.second));
  }
  return absl::OkStatus();
}

// --input NAME=D1,D2,...[:int64]
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
    return absl::InvalidArgumentError(
        absl::StrCat("--input ", arg, ": dtype must be float32 or int64, got '",
                     spec.second, "'"));
  }
  for (absl::string_view d :
       absl::StrSplit(spec.first, ',', absl::SkipEmpty())) {
    int64_t dim;
    if (!absl::SimpleAtoi(d, &dim)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--input ", arg, ": '", d, "' is not a dimension"));
    }
    shape.add_dims(dim);
  }
  return absl::OkStatus();
}

// Values of a float32 or int64 tensor as doubles, for printing.
std::vector<double> Values(const pb::Tensor& t) {
  std::vector<double> v;
  if (t.dtype() == pb::DATA_TYPE_INT64) {
    std::vector<int64_t> raw(t.data().size() / sizeof(int64_t));
    std::memcpy(raw.data(), t.data().data(), raw.size() * sizeof(int64_t));
    v.assign(raw.begin(), raw.end());
  } else if (t.dtype() == pb::DATA_TYPE_FLOAT32) {
    std::vector<float> raw(t.data().size() / sizeof(float));
    std::memcpy(raw.data(), t.data().data(), raw.size() * sizeof(float));
    v.assign(raw.begin(), raw.end());
  }
  return v;
}

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

// A file name for a value name: anything but letters, digits, '.', '_', '-'
// becomes '_'.
std::string FileName(const std::string& prefix, const std::string& name) {
  std::string safe = name;
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-') {
      c = '_';
    }
  }
  return absl::StrCat(prefix, safe, ".npy");
}

absl::Status WriteAll(const std::string& dir, const std::string& prefix,
                      const google::protobuf::Map<std::string, pb::Tensor>& m,
                      int* written) {
  // Sorted for a stable listing.
  std::map<std::string, const pb::Tensor*> sorted;
  for (const auto& [name, t] : m) sorted[name] = &t;
  for (const auto& [name, t] : sorted) {
    RETURN_IF_ERROR(WriteNpy(
        (std::filesystem::path(dir) / FileName(prefix, name)).string(), *t));
    ++*written;
  }
  return absl::OkStatus();
}

void PrintSection(std::ostream& out, const std::string& title,
                  const google::protobuf::Map<std::string, pb::Tensor>& m) {
  if (m.empty()) return;
  out << title << ":\n";
  std::map<std::string, const pb::Tensor*> sorted;
  for (const auto& [name, t] : m) sorted[name] = &t;
  for (const auto& [name, t] : sorted) PrintTensor(out, name, *t);
}

struct Options {
  std::string server = "localhost:50051";
  double timeout = 60;
  std::string graph;
  std::vector<std::string> feeds, inputs, fetch, wrt, grads;
  std::string loss, mode = "train", out_dir;
  uint64_t seed = 0;
};

absl::Status Info(Client& client, const Options& o, std::ostream& out) {
  ASSIGN_OR_RETURN(pb::GetServerInfoResponse info, client.Info());
  out << "gradserve " << info.version() << " at " << o.server << "\n"
      << "oneDNN " << info.onednn_version() << " on " << info.cpu_isa() << ", "
      << info.workers() << " worker(s) x " << info.threads_per_worker()
      << " thread(s)\n"
      << "limits: " << info.limits().max_message_bytes() << " bytes a message, "
      << info.limits().max_tensor_elements() << " elements a tensor, "
      << info.limits().max_graph_nodes() << " nodes a graph, "
      << info.limits().max_request_bytes() << " bytes a request\n"
      << "program cache: " << info.program_cache().hits() << " hits, "
      << info.program_cache().misses() << " misses, "
      << info.program_cache().entries() << " programs in "
      << info.program_cache().bytes() << " of "
      << info.program_cache().capacity_bytes() << " bytes\n"
      << "held: " << info.sessions() << " session(s), " << info.activations()
      << " activation(s); features: " << absl::StrJoin(info.features(), ", ")
      << "\n"
      << info.ops_size() << " ops:\n";
  for (const pb::OpInfo& op : info.ops()) {
    std::vector<std::string> inputs, attrs;
    for (const pb::OpInput& in : op.inputs()) {
      inputs.push_back(absl::StrCat(in.name(), in.optional() ? "?" : "",
                                    in.variadic() ? "..." : ""));
    }
    for (const pb::OpAttribute& a : op.attributes()) {
      attrs.push_back(absl::StrCat(
          a.name(), ": ", a.type(), " = ",
          a.default_value().empty() ? "(required)" : a.default_value()));
    }
    out << "  " << op.name() << "(" << absl::StrJoin(inputs, ", ") << ") -> "
        << absl::StrJoin(op.outputs(), ", ") << "\n      " << op.description()
        << "\n";
    if (!attrs.empty()) out << "      " << absl::StrJoin(attrs, "; ") << "\n";
  }
  return absl::OkStatus();
}

absl::Status Describe(Client& client, const Options& o, std::ostream& out) {
  pb::DescribeRequest request;
  ASSIGN_OR_RETURN(*request.mutable_graph(), ReadGraph(o.graph));
  for (const std::string& arg : o.inputs) {
    RETURN_IF_ERROR(ParseInputShape(arg, &request));
  }
  for (const std::string& arg : o.feeds) {
    ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, "--feed"));
    ASSIGN_OR_RETURN(pb::Tensor t, ReadNpy(kv.second));
    pb::TensorShape& shape = (*request.mutable_input_shapes())[kv.first];
    shape.mutable_dims()->CopyFrom(t.shape());
    shape.set_dtype(t.dtype());
  }
  ASSIGN_OR_RETURN(pb::DescribeResponse d, client.Describe(request));
  out << std::left << std::setw(18) << "node" << std::setw(20) << "op"
      << std::setw(22) << "output shapes" << std::right << std::setw(12)
      << "params" << std::setw(16) << "forward FLOPs"
      << "\n";
  for (const pb::NodeSummary& n : d.nodes()) {
    std::vector<std::string> shapes;
    for (const pb::TensorShape& s : n.output_shapes()) {
      shapes.push_back(DimsToString(s.dims()));
    }
    out << std::left << std::setw(18) << n.name() << std::setw(20) << n.op()
        << std::setw(22) << absl::StrJoin(shapes, " ") << std::right
        << std::setw(12) << n.parameters() << std::setw(16) << n.forward_flops()
        << "\n";
  }
  out << "total: " << d.total_parameters() << " trainable parameters, "
      << d.forward_flops() << " forward FLOPs, " << d.backward_flops()
      << " backward FLOPs\n";
  return absl::OkStatus();
}

absl::Status Compute(Client& client, const Options& o, std::ostream& out) {
  pb::ComputeRequest request;
  ASSIGN_OR_RETURN(*request.mutable_graph(), ReadGraph(o.graph));
  RETURN_IF_ERROR(ReadTensors(o.feeds, "--feed", request.mutable_feeds()));
  RETURN_IF_ERROR(
      ReadTensors(o.grads, "--grad", request.mutable_output_gradients()));
  for (const std::string& f : o.fetch) request.add_fetch(f);
  for (const std::string& w : o.wrt) request.add_wrt(w);
  request.set_loss(o.loss);
  request.set_mode(o.mode == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
  request.set_seed(o.seed);
  ASSIGN_OR_RETURN(pb::ComputeResponse r, client.Compute(request));
  PrintSection(out, "outputs", r.outputs());
  PrintSection(out, "gradients", r.gradients());
  PrintSection(out, "buffers", r.buffers());
  if (!o.out_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(o.out_dir, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat(o.out_dir, ": cannot create (", error.message(), ")"));
    }
    int written = 0;
    RETURN_IF_ERROR(WriteAll(o.out_dir, "", r.outputs(), &written));
    RETURN_IF_ERROR(WriteAll(o.out_dir, "grad_", r.gradients(), &written));
    RETURN_IF_ERROR(WriteAll(o.out_dir, "buffer_", r.buffers(), &written));
    out << "wrote " << written << " .npy files to " << o.out_dir << "\n";
  }
  return absl::OkStatus();
}

void AddGraphOption(CLI::App* command, Options* o) {
  command
      ->add_option("--graph", o->graph,
                   "graph file: protobuf JSON (.json) or text (.pbtxt)")
      ->required();
}

}  // namespace

int RunGradctl(int argc, const char* const* argv, std::ostream& out,
               std::ostream& err) {
  Options o;
  CLI::App app(
      "gradctl: talk to a gradserve server (forward and backward passes of "
      "neural-network graphs over gRPC).",
      "gradctl");
  app.add_option("--server", o.server,
                 "gradserve address HOST:PORT; several, comma-separated, or a "
                 "gRPC target such as dns:///NAME:PORT: calls go round-robin "
                 "over all of them")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "deadline of each call, in seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.require_subcommand(1);

  CLI::App* info = app.add_subcommand(
      "info", "Server version, oneDNN version and ISA, threads, limits, ops.");
  CLI::App* health = app.add_subcommand(
      "health", "Prints the server's health; exits 0 only when SERVING.");

  CLI::App* describe = app.add_subcommand(
      "describe",
      "Output shapes, trainable parameters and FLOPs of each node of a graph, "
      "without running it.");
  AddGraphOption(describe, &o);
  describe->add_option(
      "--input", o.inputs,
      "shape of a graph input: NAME=D1,D2,...[:int64] (float32 by default), "
      "e.g. x=64,784 or labels=64:int64; repeatable");
  describe->add_option("--feed", o.feeds,
                       "take a graph input's shape from a file: NAME=FILE.npy; "
                       "repeatable");

  CLI::App* compute = app.add_subcommand(
      "compute",
      "Runs a graph forward and, given --loss or --grad, backward; prints the "
      "results and, with --out, writes them as .npy files.");
  AddGraphOption(compute, &o);
  compute->add_option("--feed", o.feeds,
                      "a graph input's value: NAME=FILE.npy; repeatable");
  compute->add_option("--fetch", o.fetch,
                      "a value to return (default: the graph's outputs); "
                      "repeatable");
  compute->add_option("--loss", o.loss, "a scalar value to differentiate");
  compute->add_option("--wrt", o.wrt,
                      "a value whose gradient to return (default with --loss "
                      "or --grad: every parameter); repeatable");
  compute->add_option("--grad", o.grads,
                      "a seed dLoss/dValue: NAME=FILE.npy; repeatable; adds to "
                      "--loss");
  compute->add_option("--mode", o.mode, "train or eval")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "eval"}));
  compute->add_option("--seed", o.seed, "random seed (dropout masks)")
      ->capture_default_str();
  compute->add_option("--out", o.out_dir,
                      "directory for NAME.npy, grad_NAME.npy, buffer_NAME.npy");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? 0 : kExitUsage;
  }

  ClientOptions options;
  options.target = o.server;
  options.timeout = absl::Seconds(o.timeout);
  auto created = Client::Create(options);
  if (!created.ok()) {
    err << "error: " << created.status().message() << "\n";
    return kExitUsage;
  }
  Client& client = **created;
  absl::Status status;
  if (*info) {
    status = Info(client, o, out);
  } else if (*health) {
    auto serving = client.Health();
    status = serving.status();
    if (serving.ok()) {
      out << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*serving)
          << "\n";
      if (*serving != grpc::health::v1::HealthCheckResponse::SERVING) {
        return kExitError;
      }
    }
  } else if (*describe) {
    status = Describe(client, o, out);
  } else if (*compute) {
    status = Compute(client, o, out);
  }
  if (!status.ok()) {
    err << "error: " << absl::StatusCodeToString(status.code()) << ": "
        << status.message() << "\n";
    return kExitError;
  }
  return 0;
}

}  // namespace gradserve::client
