// The access log: one line per call on stderr, key=value (logfmt):
//   ts=2026-12-01T14:50:00.123Z level=info rpc=Compute
//   peer=ipv4:127.0.0.1:40000 tenant=team-a code=OK bytes_in=120
//   bytes_out=64 ms=0.412
// (one line). It never holds tensor contents, status messages or
// metadata (tokens): only what CallRecord carries. A call's line has the
// level of its code (LevelOf); --log_level says which levels are written.
#ifndef GRADSERVE_SERVER_ACCESS_LOG_H_
#define GRADSERVE_SERVER_ACCESS_LOG_H_

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/call_observer.h"

namespace gradserve::server {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2 };

// "error", "warning" or "info"; INVALID_ARGUMENT naming the others.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
absl::string_view LogLevelName(LogLevel level);

// error: the server failed (INTERNAL, UNKNOWN, DATA_LOSS); warning: it
// could not serve in time or had no room (RESOURCE_EXHAUSTED, UNAVAILABLE,
// DEADLINE_EXCEEDED); info: everything else, including callers' errors.
LogLevel LevelOf(grpc::StatusCode code);

class AccessLog final : public CallObserver {
 public:
  // Writes the lines of calls at `level` or more severe to `out`.
  explicit AccessLog(LogLevel level, std::FILE* out = stderr)
      : level_(level), out_(out) {}

  void OnCall(const CallRecord& call) override;

  // The line of `call` (with its newline) as of `now`.
  static std::string Line(const CallRecord& call, absl::Time now);

 private:
  const LogLevel level_;
  std::FILE* const out_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_ACCESS_LOG_H_
