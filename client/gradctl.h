// gradctl's commands, as a function tests can call.
#ifndef GRADSERVE_CLIENT_GRADCTL_H_
#define GRADSERVE_CLIENT_GRADCTL_H_

#include <ostream>

namespace gradserve::client {

// Runs `gradctl argv...`, writing to `out` and `err`. Returns the exit code:
// 0 success, 1 an error from the server or a file, 2 a usage error, 130 a
// run stopped by Ctrl-C (SIGINT) or SIGTERM. `out_is_tty`: draw progress
// bars rather than periodic lines.
int RunGradctl(int argc, const char* const* argv, std::ostream& out,
               std::ostream& err, bool out_is_tty = false);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_GRADCTL_H_
