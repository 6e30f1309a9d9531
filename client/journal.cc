#include "client/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/atomic_file.h"
#include "client/npy.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

std::string Header(const std::string& fingerprint, int64_t jobs) {
  return absl::StrCat("gradctl batch journal v1 jobs=", jobs,
                      " run=", fingerprint);
}

// Messages go on one line.
std::string OneLine(absl::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(
    const std::string& dir, const std::string& fingerprint, int64_t jobs,
    bool resume) {
  const std::string path = (std::filesystem::path(dir) / kFileName).string();
  const bool exists = std::filesystem::exists(path);
  if (exists && !resume) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " holds the journal of an earlier run (", kFileName,
        "): pass --resume to finish that run, or choose another --out"));
  }
  std::string text;
  if (exists) {
    ASSIGN_OR_RETURN(text, ReadFile(path));
  }
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open (", std::strerror(errno), ")"));
  }
  std::unique_ptr<Journal> journal(new Journal(path, fd));
  const std::string header = Header(fingerprint, jobs);
  if (exists && !text.empty()) {
    RETURN_IF_ERROR(journal->Load(text, header, jobs));
  } else {
    if (::ftruncate(fd, 0) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
    }
    RETURN_IF_ERROR(journal->Append(header));
    RETURN_IF_ERROR(SyncDirectory(dir));
  }
  return journal;
}

Journal::~Journal() { ::close(fd_); }

absl::Status Journal::Load(const std::string& text, const std::string& header,
                           int64_t jobs) {
  // Only whole lines count: a crash may leave the last one cut short.
  const size_t whole = text.rfind('\n') + 1;  // 0 when there is none
  std::vector<absl::string_view> lines = absl::StrSplit(
      absl::string_view(text).substr(0, whole), '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != header) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, " is the journal of another run (",
        lines.empty() ? "no header" : std::string(lines[0]), "; this run is \"",
        header,
        "\"): resume with the same graph, data, batches and request flags, or "
        "choose another --out"));
  }
  resumed_ = true;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i] == "reduced") {
      reduced_ = true;
      continue;
    }
    std::vector<absl::string_view> f =
        absl::StrSplit(lines[i], absl::MaxSplits(' ', 2));
    int64_t job;
    if (f.size() < 2 || !absl::SimpleAtoi(f[1], &job) || job < 0 ||
        job >= jobs) {
      return absl::DataLossError(absl::StrCat(path_, ": line ", i + 1,
                                              " is not a journal entry: '",
                                              lines[i], "'"));
    }
    if (f[0] == "ok") {
      done_.insert(job);
      failed_.erase(job);
    } else if (f[0] == "failed" && done_.count(job) == 0) {
      failed_[job] = f.size() > 2 ? std::string(f[2]) : "";
    }
  }
  if (::ftruncate(fd_, static_cast<off_t>(whole)) != 0 ||
      ::lseek(fd_, 0, SEEK_END) < 0) {
    return absl::PermissionDeniedError(absl::StrCat(path_, ": cannot write"));
  }
  return absl::OkStatus();
}

absl::Status Journal::Append(const std::string& line) {
  const std::string bytes = line + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  // One write per line: a crash cuts at most the last line.
  if (::write(fd_, bytes.data(), bytes.size()) !=
          static_cast<ssize_t>(bytes.size()) ||
      ::fdatasync(fd_) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path_, ": cannot write (", std::strerror(errno), ")"));
  }
  return absl::OkStatus();
}

absl::Status Journal::RecordOk(int64_t job, int attempts, double latency_ms) {
  return Append(absl::StrCat("ok ", job, " attempts=", attempts,
                             " latency_ms=", latency_ms));
}

absl::Status Journal::RecordReduced() { return Append("reduced"); }

absl::Status Journal::RecordFailed(int64_t job, const absl::Status& status) {
  return Append(absl::StrCat("failed ", job, " ",
                             absl::StatusCodeToString(status.code()), ": ",
                             OneLine(status.message())));
}

}  // namespace gradserve::client
