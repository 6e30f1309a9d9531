// gradctl describe, gradctl compute.
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/atomic_file.h"
#include "client/gradctl_commands.h"
#include "client/graph_file.h"
#include "client/npy.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

class Describe : public Command {
 public:
  explicit Describe(CLI::App& app) {
    AddGraphOption(app, &graph_, false);
    app.add_option("model", model_,
                   "the model file, as --graph (gradctl describe model.onnx: "
                   "the graph the server imports it to)");
    app.add_option(
        "--input", inputs_,
        "shape of a graph input: NAME=D1,D2,...[:int64] (float32 by default), "
        "e.g. x=64,784 or labels=64:int64; repeatable");
    app.add_option("--feed", feeds_,
                   "take a graph input's shape from a file: NAME=FILE.npy; "
                   "repeatable");
  }

  absl::Status Run(Context& context) override {
    if (graph_.empty() == model_.empty()) {
      return UsageError("describe takes one model: --graph FILE or FILE");
    }
    pb::DescribeRequest request;
    RETURN_IF_ERROR(ReadModel(graph_.empty() ? model_ : graph_, &request));
    for (const std::string& arg : inputs_) {
      RETURN_IF_ERROR(ParseInputShape(arg, &request));
    }
    for (const std::string& arg : feeds_) {
      ASSIGN_OR_RETURN(auto kv, SplitAssignment(arg, "--feed"));
      ASSIGN_OR_RETURN(pb::Tensor t, ReadNpy(kv.second));
      pb::TensorShape& shape = (*request.mutable_input_shapes())[kv.first];
      shape.mutable_dims()->CopyFrom(t.shape());
      shape.set_dtype(t.dtype());
    }
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(pb::DescribeResponse d, client->Describe(request));
    Print(context.out, d);
    return absl::OkStatus();
  }

 private:
  // Columns as wide as their longest entry (ONNX names run long).
  static void Print(std::ostream& out, const pb::DescribeResponse& d) {
    size_t name_width = 18, op_width = 20;
    for (const pb::NodeSummary& n : d.nodes()) {
      name_width = std::max(name_width, n.name().size() + 2);
      op_width = std::max(op_width, n.op().size() + 2);
    }
    const int nw = static_cast<int>(name_width),
              ow = static_cast<int>(op_width);
    out << std::left << std::setw(nw) << "node" << std::setw(ow) << "op"
        << std::setw(22) << "output shapes" << std::right << std::setw(12)
        << "params" << std::setw(16) << "forward FLOPs"
        << "\n";
    for (const pb::NodeSummary& n : d.nodes()) {
      std::vector<std::string> shapes;
      for (const pb::TensorShape& s : n.output_shapes()) {
        shapes.push_back(DimsToString(s.dims()));
      }
      out << std::left << std::setw(nw) << n.name() << std::setw(ow) << n.op()
          << std::setw(22) << absl::StrJoin(shapes, " ") << std::right
          << std::setw(12) << n.parameters() << std::setw(16)
          << n.forward_flops() << "\n";
    }
    out << "total: " << d.total_parameters() << " trainable parameters, "
        << d.forward_flops() << " forward FLOPs, " << d.backward_flops()
        << " backward FLOPs\n";
  }

  std::string graph_, model_;
  std::vector<std::string> inputs_, feeds_;
};

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

class Compute : public Command {
 public:
  explicit Compute(CLI::App& app) {
    AddGraphOption(app, &graph_, true);
    app.add_option("--feed", feeds_,
                   "a graph input's value: NAME=FILE.npy; repeatable");
    app.add_option("--fetch", fetch_,
                   "a value to return (default: the graph's outputs); "
                   "repeatable");
    app.add_option("--loss", loss_, "a scalar value to differentiate");
    app.add_option("--wrt", wrt_,
                   "a value whose gradient to return (default with --loss "
                   "or --grad: every parameter); repeatable");
    app.add_option("--grad", grads_,
                   "a seed dLoss/dValue: NAME=FILE.npy; repeatable; adds to "
                   "--loss");
    app.add_option("--mode", mode_, "train or eval")
        ->capture_default_str()
        ->check(CLI::IsMember({"train", "eval"}));
    app.add_option("--seed", seed_, "random seed (dropout masks)")
        ->capture_default_str();
    app.add_option("--out", out_dir_,
                   "directory for NAME.npy, grad_NAME.npy, buffer_NAME.npy");
  }

  absl::Status Run(Context& context) override {
    pb::ComputeRequest request;
    RETURN_IF_ERROR(ReadModel(graph_, &request));
    RETURN_IF_ERROR(ReadTensors(feeds_, "--feed", request.mutable_feeds()));
    RETURN_IF_ERROR(
        ReadTensors(grads_, "--grad", request.mutable_output_gradients()));
    for (const std::string& f : fetch_) request.add_fetch(f);
    for (const std::string& w : wrt_) request.add_wrt(w);
    request.set_loss(loss_);
    request.set_mode(mode_ == "eval" ? pb::MODE_EVAL : pb::MODE_TRAIN);
    request.set_seed(seed_);
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(pb::ComputeResponse r, client->Compute(request));
    PrintSection(context.out, "outputs", r.outputs());
    PrintSection(context.out, "gradients", r.gradients());
    PrintSection(context.out, "buffers", r.buffers());
    if (out_dir_.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(MakeDirectories(out_dir_));
    int written = 0;
    RETURN_IF_ERROR(WriteAll(out_dir_, "", r.outputs(), &written));
    RETURN_IF_ERROR(WriteAll(out_dir_, "grad_", r.gradients(), &written));
    RETURN_IF_ERROR(WriteAll(out_dir_, "buffer_", r.buffers(), &written));
    context.out << "wrote " << written << " .npy files to " << out_dir_ << "\n";
    return absl::OkStatus();
  }

 private:
  std::string graph_;
  std::vector<std::string> feeds_, fetch_, wrt_, grads_;
  std::string loss_, mode_ = "train", out_dir_;
  uint64_t seed_ = 0;
};

}  // namespace

std::unique_ptr<Command> DefineDescribe(CLI::App& app) {
  return std::make_unique<Describe>(app);
}

std::unique_ptr<Command> DefineCompute(CLI::App& app) {
  return std::make_unique<Compute>(app);
}

}  // namespace gradserve::client
