// gradctl's commands, one Define function each (gradctl_<command>.cc);
// gradctl.cc lists them, one line per command.
#ifndef GRADSERVE_CLIENT_GRADCTL_COMMANDS_H_
#define GRADSERVE_CLIENT_GRADCTL_COMMANDS_H_

#include <memory>

#include "client/gradctl_common.h"

namespace gradserve::client {

std::unique_ptr<Command> DefineInfo(CLI::App& app);
std::unique_ptr<Command> DefineHealth(CLI::App& app);
std::unique_ptr<Command> DefineDescribe(CLI::App& app);
std::unique_ptr<Command> DefineCompute(CLI::App& app);
std::unique_ptr<Command> DefineBatch(CLI::App& app);
std::unique_ptr<Command> DefineTrain(CLI::App& app);
std::unique_ptr<Command> DefineBench(CLI::App& app);
std::unique_ptr<Command> DefineSessions(CLI::App& app);
std::unique_ptr<Command> DefineGradcheck(CLI::App& app);
std::unique_ptr<Command> DefineHessian(CLI::App& app);
std::unique_ptr<Command> DefineImport(CLI::App& app);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_COMMANDS_H_
