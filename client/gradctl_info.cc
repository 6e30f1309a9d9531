// gradctl info, gradctl health.
#include "absl/strings/str_join.h"
#include "client/gradctl_commands.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

class Info : public Command {
 public:
  absl::Status Run(Context& context) override {
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(pb::GetServerInfoResponse info, client->Info());
    std::ostream& out = context.out;
    out << "gradserve " << info.version() << " at " << context.global.server
        << "\n"
        << "oneDNN " << info.onednn_version() << " on " << info.cpu_isa()
        << ", " << info.workers() << " worker(s) x "
        << info.threads_per_worker() << " thread(s)\n"
        << "limits: " << info.limits().max_message_bytes()
        << " bytes a message, " << info.limits().max_tensor_elements()
        << " elements a tensor, " << info.limits().max_graph_nodes()
        << " nodes a graph, " << info.limits().max_request_bytes()
        << " bytes a request\n"
        << "program cache: " << info.program_cache().hits() << " hits, "
        << info.program_cache().misses() << " misses, "
        << info.program_cache().entries() << " programs in "
        << info.program_cache().bytes() << " of "
        << info.program_cache().capacity_bytes() << " bytes\n"
        << "held: " << info.sessions() << " session(s), " << info.activations()
        << " activation(s); features: " << absl::StrJoin(info.features(), ", ")
        << "\n"
        << info.ops_size() << " ops:\n";
    for (const pb::OpInfo& op : info.ops()) PrintOp(out, op);
    return absl::OkStatus();
  }

 private:
  static void PrintOp(std::ostream& out, const pb::OpInfo& op) {
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
};

class Health : public Command {
 public:
  absl::Status Run(Context& context) override {
    ASSIGN_OR_RETURN(auto client, context.Connect());
    ASSIGN_OR_RETURN(auto serving, client->Health());
    context.out << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                       serving)
                << "\n";
    if (serving != grpc::health::v1::HealthCheckResponse::SERVING) {
      return ExitWith(kExitError);
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Command> DefineInfo(CLI::App& app) {
  return std::make_unique<Info>();
}

std::unique_ptr<Command> DefineHealth(CLI::App& app) {
  return std::make_unique<Health>();
}

}  // namespace gradserve::client
