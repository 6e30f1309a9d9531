#include "client/gradctl.h"

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/gradctl_commands.h"

namespace gradserve::client {
namespace {

struct CommandSpec {
  const char* name;
  const char* help;
  DefineCommand define;
};

// Every command, one line each.
const CommandSpec kCommands[] = {
    {"info", "Server version, oneDNN version and ISA, threads, limits, ops.",
     DefineInfo},
    {"health", "Prints the server's health; exits 0 only when SERVING.",
     DefineHealth},
    {"describe",
     "Output shapes, trainable parameters and FLOPs of each node of a graph, "
     "without running it.",
     DefineDescribe},
    {"compute",
     "Runs a graph forward and, given --loss or --grad, backward; prints the "
     "results and, with --out, writes them as .npy files.",
     DefineCompute},
    {"batch",
     "Runs a graph or session over many inputs (a data set in batches, or a "
     "JSONL manifest): concurrent calls, retries, results per job or reduced, "
     "a journal to --resume from.",
     DefineBatch},
    {"train",
     "Trains a graph on a data set in a server-side session: epochs, "
     "shuffling, optimizer and schedule, evaluation, metrics, plot, "
     "checkpoints and --resume.",
     DefineTrain},
    {"bench",
     "Times N calls of a graph at concurrency C: p50/p90/p99, calls/s.",
     DefineBench},
    {"sessions", "Lists, closes, reads or sets the server's sessions.",
     DefineSessions},
    {"gradcheck",
     "Checks a graph's gradients (float64 and float32 paths) against central "
     "finite differences in float64; prints a table per tensor and exits 1 "
     "when one fails.",
     DefineGradcheck},
    {"hessian",
     "The k largest and k smallest eigenvalues of the loss's Hessian with "
     "respect to --wrt, the gradient norm, and whether the point is a "
     "minimum, maximum, saddle, degenerate or not critical.",
     DefineHessian},
    {"import",
     "Imports an ONNX model here (no server) and writes it as a gradserve "
     "graph file (.pbtxt or .json), parameters included, to read, edit and "
     "send with --graph.",
     DefineImport},
};

std::string CommandList() {
  std::string list;
  for (const CommandSpec& c : kCommands) {
    absl::StrAppend(&list, list.empty() ? "" : ", ", c.name);
  }
  return list;
}

// A parse error's exit code, after printing it; an unknown or missing
// command is named and the commands listed.
int ParseFailed(CLI::App& app, const CLI::ParseError& e, std::ostream& out,
                std::ostream& err) {
  if (app.get_subcommands().empty() && e.get_exit_code() != 0) {
    const std::vector<std::string> rest = app.remaining();
    if (!rest.empty() && !absl::StartsWith(rest[0], "-")) {
      err << "gradctl: unknown command '" << rest[0]
          << "'; the commands are: " << CommandList() << "\n";
      return kExitUsage;
    }
    if (rest.empty() && dynamic_cast<const CLI::RequiredError*>(&e)) {
      err << "gradctl: a command is required; the commands are: "
          << CommandList() << " (gradctl --help tells more)\n";
      return kExitUsage;
    }
  }
  const int code = app.exit(e, out, err);
  return code == 0 ? 0 : kExitUsage;
}

}  // namespace

int RunGradctl(int argc, const char* const* argv, std::ostream& out,
               std::ostream& err, bool out_is_tty) {
  GlobalOptions global;
  CLI::App app(
      "gradctl: talk to a gradserve server (forward and backward passes of "
      "neural-network graphs over gRPC).",
      "gradctl");
  app.add_option("--server", global.server,
                 "gradserve address HOST:PORT; several, comma-separated, or a "
                 "gRPC target such as dns:///NAME:PORT: calls go round-robin "
                 "over all of them")
      ->capture_default_str();
  app.add_option("--timeout", global.timeout,
                 "deadline of each call, in seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--tls", global.tls,
               "connect over TLS, trusting the system's CAs unless --tls_ca "
               "says which");
  app.add_option("--tls_ca", global.tls_ca,
                 "PEM file of the CA(s) that signed the server's certificate "
                 "(implies --tls)");
  app.add_option("--tls_cert", global.tls_cert,
                 "PEM client certificate, for servers that require one "
                 "(mutual TLS; with --tls_key)");
  app.add_option("--tls_key", global.tls_key, "PEM private key of --tls_cert");
  app.add_option("--tls_server_name", global.tls_server_name,
                 "the name the server's certificate must hold, when not the "
                 "host of --server");
  app.add_option("--token_file", global.token_file,
                 "file whose first line is the bearer token sent on every call "
                 "(needs TLS); without it, $GRADSERVE_TOKEN if set");
  app.require_subcommand(1);

  std::vector<std::pair<CLI::App*, std::unique_ptr<Command>>> commands;
  for (const CommandSpec& spec : kCommands) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.help);
    commands.emplace_back(sub, spec.define(*sub));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ParseFailed(app, e, out, err);
  }

  Context context{global, out, err, out_is_tty};
  for (auto& [sub, command] : commands) {
    if (!*sub) continue;
    const absl::Status status = command->Run(context);
    PrintError(err, status);
    return ExitCodeOf(status);
  }
  return kExitUsage;  // unreachable: require_subcommand(1)
}

}  // namespace gradserve::client
