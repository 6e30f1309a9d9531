#include "server/access_log.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/gradient_service.h"

namespace gradserve::server {
namespace {

// A value as logfmt writes it: bare when it has only safe characters,
// else quoted with \ and " escaped (and control characters as \xNN).
std::string Value(absl::string_view value) {
  const bool bare =
      !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return absl::ascii_isalnum(c) ||
               absl::string_view("_.:/[]@+-").find(c) !=
                   absl::string_view::npos;
      });
  if (bare) return std::string(value);
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&quoted, "\\x%02x", static_cast<unsigned char>(c));
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  for (LogLevel level :
       {LogLevel::kError, LogLevel::kWarning, LogLevel::kInfo}) {
    if (text == LogLevelName(level)) return level;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "log_level: '", text, "' is not one of error, warning, info"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kInfo:
      return "info";
  }
  return "info";
}

LogLevel LevelOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS:
      return LogLevel::kError;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return LogLevel::kWarning;
    default:
      return LogLevel::kInfo;
  }
}

std::string AccessLog::Line(const CallRecord& call, absl::Time now) {
  // paced_ms only on a refusal held back (server/refusal_pacer.h).
  const std::string paced =
      call.paced_nanoseconds > 0
          ? absl::StrFormat(" paced_ms=%.3f", call.paced_nanoseconds / 1e6)
          : "";
  return absl::StrFormat(
      "ts=%s level=%s rpc=%s peer=%s tenant=%s code=%s bytes_in=%d "
      "bytes_out=%d ms=%.3f%s\n",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone()),
      LogLevelName(LevelOf(call.code)), Value(MethodName(call.method)),
      Value(call.peer), Value(call.tenant),
      absl::StatusCodeToString(static_cast<absl::StatusCode>(call.code)),
      call.bytes_in, call.bytes_out, call.nanoseconds / 1e6, paced);
}

void AccessLog::OnCall(const CallRecord& call) {
  if (LevelOf(call.code) > level_) return;
  const std::string line = Line(call, absl::Now());
  // One write: lines of concurrent calls do not interleave.
  std::fwrite(line.data(), 1, line.size(), out_);
}

}  // namespace gradserve::server
