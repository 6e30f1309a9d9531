// gradctl's commands, as a function tests can call.
#ifndef GRADSERVE_CLIENT_GRADCTL_H_
#define GRADSERVE_CLIENT_GRADCTL_H_

#include <ostream>

namespace gradserve::client {

// Runs `gradctl argv...`, writing to `out` and `err`. Returns the exit code:
// 0 success, 1 an error from the server or a file, 2 a usage error.
int RunGradctl(int argc, const char* const* argv, std::ostream& out,
               std::ostream& err);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_H_
