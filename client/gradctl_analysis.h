// gradctl's analysis commands: `gradcheck` (a table per wrt tensor, exit 1
// when a check fails) and `hessian` (extreme eigenvalues and the verdict on
// the point).
#ifndef GRADSERVE_CLIENT_GRADCTL_ANALYSIS_H_
#define GRADSERVE_CLIENT_GRADCTL_ANALYSIS_H_

#include <functional>
#include <ostream>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/client.h"

namespace gradserve::client {

// A gradctl command defined in a file of its own: its subcommand, and what
// runs it once parsed (the exit code: 0, 1 on failure).
struct GradctlCommand {
  CLI::App* command;
  std::function<int(Client&, std::ostream& out, std::ostream& err)> run;
};

std::vector<GradctlCommand> AddAnalysisCommands(CLI::App& app);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_ANALYSIS_H_
