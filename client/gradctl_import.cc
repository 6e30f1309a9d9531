// gradctl import: an ONNX model as a gradserve graph file (.pbtxt or .json)
// that a user can read, edit and send back (gradctl compute --graph FILE).
// The import runs here, with the importer the server runs
// (core/import/onnx: core's tensors and graphs, not its ops or oneDNN) and
// the graph codec's wire half (server/codec/graph_wire): the wire contract
// has no import RPC.
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/atomic_file.h"
#include "client/gradctl_commands.h"
#include "client/graph_file.h"
#include "client/npy.h"
#include "core/import/onnx/onnx_import.h"
#include "core/status_macros.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "server/codec/graph_wire.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

// float32 and int64 values as float_values / int64_values (exact, and
// readable in text); float64 ones keep their data bytes.
void AsValues(pb::Tensor& t) {
  if (t.dtype() == pb::DATA_TYPE_FLOAT32) {
    std::vector<float> v(t.data().size() / sizeof(float));
    std::memcpy(v.data(), t.data().data(), v.size() * sizeof(float));
    t.mutable_float_values()->Assign(v.begin(), v.end());
    t.clear_data();
  } else if (t.dtype() == pb::DATA_TYPE_INT64) {
    std::vector<int64_t> v(t.data().size() / sizeof(int64_t));
    std::memcpy(v.data(), t.data().data(), v.size() * sizeof(int64_t));
    t.mutable_int64_values()->Assign(v.begin(), v.end());
    t.clear_data();
  }
}

absl::StatusOr<std::string> Serialize(const pb::Graph& graph,
                                      const std::string& path) {
  std::string text;
  if (absl::EndsWith(path, ".json")) {
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    const auto status =
        google::protobuf::util::MessageToJsonString(graph, &text, options);
    if (!status.ok()) {
      return absl::InternalError(absl::StrCat(path, ": ", status.ToString()));
    }
    return text;
  }
  google::protobuf::TextFormat::Printer printer;
  if (!printer.PrintToString(graph, &text)) {
    return absl::InternalError(absl::StrCat(path, ": text format failed"));
  }
  return text;
}

class Import : public Command {
 public:
  explicit Import(CLI::App& app) {
    app.add_option("model", model_, "the ONNX model (.onnx)")->required();
    app.add_option("--out", out_,
                   "the graph file to write: .pbtxt (protobuf text format) or "
                   ".json (protobuf JSON)")
        ->required();
    app.add_option("--input", inputs_,
                   "dims of a graph input the model leaves symbolic (dynamic "
                   "axes): NAME=D1,D2,... as describe's; repeatable");
  }

  absl::Status Run(Context& context) override {
    if (!IsOnnxFile(model_)) {
      return UsageError(
          absl::StrCat("import takes an .onnx model, got '", model_, "'"));
    }
    if (!absl::EndsWith(out_, ".pbtxt") && !absl::EndsWith(out_, ".json")) {
      return UsageError(absl::StrCat("--out ", out_,
                                     ": the graph file must end in .pbtxt or "
                                     ".json"));
    }
    pb::DescribeRequest shapes;
    for (const std::string& arg : inputs_) {
      RETURN_IF_ERROR(ParseInputShape(arg, &shapes));
    }
    onnx_import::InputShapes input_shapes;
    for (const auto& [name, shape] : shapes.input_shapes()) {
      input_shapes[name] = Shape(shape.dims().begin(), shape.dims().end());
    }
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(model_));
    auto graph = onnx_import::ImportModel(bytes, Limits{}, input_shapes);
    if (!graph.ok()) return Annotate(graph.status(), model_);
    pb::Graph proto;
    server::GraphToProto(*graph, &proto);
    for (auto* map : {proto.mutable_parameters(), proto.mutable_buffers()}) {
      for (auto& [name, t] : *map) AsValues(t);
    }
    ASSIGN_OR_RETURN(std::string text, Serialize(proto, out_));
    RETURN_IF_ERROR(WriteFileAtomically(out_, text));
    context.out << "wrote " << out_ << ": " << proto.nodes_size() << " nodes, "
                << proto.parameters_size() << " parameters, "
                << proto.buffers_size() << " buffers, inputs "
                << absl::StrJoin(proto.inputs(), ", ") << ", outputs "
                << absl::StrJoin(proto.outputs(), ", ") << "\n";
    return absl::OkStatus();
  }

 private:
  std::string model_, out_;
  std::vector<std::string> inputs_;
};

}  // namespace

std::unique_ptr<Command> DefineImport(CLI::App& app) {
  return std::make_unique<Import>(app);
}

}  // namespace gradserve::client
