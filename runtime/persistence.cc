#include "runtime/persistence.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace gradserve::runtime {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kSuffix = ".session";
constexpr absl::string_view kTempSuffix = ".session.tmp";

void Log(const std::string& line) {
  std::fprintf(stderr, "gradserve: %s\n", line.c_str());
}

absl::Status Errno(int error, absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(error, absl::StrCat(what, " ", path));
}

// The whole of `bytes` in a new file at `path`, on disk when this returns.
absl::Status WriteSynced(const std::string& path, absl::string_view bytes) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno(errno, "cannot create", path);
  absl::Status status;
  while (!bytes.empty() && status.ok()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno != EINTR) status = Errno(errno, "cannot write", path);
    if (n > 0) bytes.remove_prefix(static_cast<size_t>(n));
  }
  if (status.ok() && fsync(fd) != 0) status = Errno(errno, "cannot sync", path);
  if (close(fd) != 0 && status.ok())
    status = Errno(errno, "cannot close", path);
  return status;
}

// Makes the directory's renames and deletions durable.
absl::Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "cannot open", dir);
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : Errno(error, "cannot sync", dir);
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "cannot open", path);
  std::string bytes;
  char chunk[1 << 16];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return Errno(error, "cannot read", path);
    }
    bytes.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  return bytes;
}

// Renames a file the server will not restore, so that it is kept for
// someone to look at and not read again.
void SetAside(const std::string& path, absl::string_view suffix,
              const absl::Status& why) {
  const std::string aside = absl::StrCat(path, suffix);
  std::error_code error;
  fs::rename(path, aside, error);
  Log(absl::StrCat("state_dir: ", path, ": ", why.message(), "; ",
                   error
                       ? absl::StrCat("cannot set it aside: ", error.message())
                       : absl::StrCat("set aside as ", aside)));
}

// The directory's entries, in name order.
std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    names.push_back(entry.path().filename().string());
  }
  if (error)
    Log(absl::StrCat("state_dir: cannot list ", dir, ": ", error.message()));
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

SessionSpec SpecOf(const Session& session, const ValueSet& values) {
  SessionSpec spec;
  spec.id = session.id();
  spec.tenant = session.tenant();
  spec.label = session.label();
  spec.graph = session.structure();
  spec.graph.parameters = values.parameters;
  spec.graph.buffers = values.buffers;
  spec.optimizer = session.optimizer();
  spec.frozen = session.frozen();
  spec.ttl_seconds = session.ttl_seconds();
  spec.optimizer_state = values.optimizer_state;
  spec.step = values.step;
  return spec;
}

SessionPersistence::SessionPersistence(
    const PersistenceOptions& options,
    std::shared_ptr<const SessionCodec> codec, SessionManager* sessions,
    const Limits& limits)
    : dir_(options.state_dir),
      interval_(options.snapshot_interval),
      codec_(std::move(codec)),
      sessions_(sessions),
      limits_(limits) {}

absl::StatusOr<std::unique_ptr<SessionPersistence>> SessionPersistence::Open(
    const PersistenceOptions& options,
    std::shared_ptr<const SessionCodec> codec, SessionManager* sessions,
    const Limits& limits) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("state_dir: name a directory");
  }
  if (options.snapshot_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot_seconds must be > 0, got ",
                     absl::FormatDuration(options.snapshot_interval)));
  }
  std::error_code error;
  fs::create_directories(options.state_dir, error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state_dir: cannot create ", options.state_dir, ": ", error.message()));
  }
  auto persistence = std::unique_ptr<SessionPersistence>(
      new SessionPersistence(options, std::move(codec), sessions, limits));
  const std::string lock = absl::StrCat(options.state_dir, "/LOCK");
  persistence->lock_fd_ =
      open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (persistence->lock_fd_ < 0) {
    return Errno(errno, "state_dir: cannot create", lock);
  }
  if (flock(persistence->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("state_dir: ", options.state_dir,
                     " is in use by another gradserve (", lock, " is locked)"));
  }
  return persistence;
}

SessionPersistence::~SessionPersistence() {
  Stop();
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
}

std::string SessionPersistence::PathOf(const std::string& id) const {
  return absl::StrCat(dir_, "/", id, kSuffix);
}

RestoreReport SessionPersistence::Restore() {
  std::lock_guard<std::mutex> pass(pass_mu_);
  RestoreReport report;
  for (const std::string& name : FileNames(dir_)) {
    const std::string path = absl::StrCat(dir_, "/", name);
    if (absl::EndsWith(name, kTempSuffix)) {
      std::error_code error;
      if (fs::remove(path, error)) ++report.temp_removed;
      continue;
    }
    if (!absl::EndsWith(name, kSuffix) || name.size() == kSuffix.size()) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - kSuffix.size());
    if (RestoreFile(path, id)) {
      ++report.restored;
    } else {
      ++report.set_aside;
    }
  }
  if (report.temp_removed > 0 || report.set_aside > 0) {
    if (absl::Status s = SyncDir(dir_); !s.ok()) Log(std::string(s.message()));
  }
  Log(absl::StrCat("state_dir ", dir_, ": restored ", report.restored,
                   " session(s); ", report.set_aside, " file(s) set aside, ",
                   report.temp_removed, " unfinished snapshot(s) removed"));
  return report;
}

bool SessionPersistence::RestoreFile(const std::string& path,
                                     const std::string& id) {
  auto bytes = ReadAll(path);
  absl::StatusOr<SessionSpec> spec =
      bytes.ok() ? codec_->Decode(*bytes)
                 : absl::StatusOr<SessionSpec>(bytes.status());
  if (spec.ok() && spec->id != id) {
    spec = absl::DataLossError(absl::StrCat("the file holds session '",
                                            spec->id, "', not '", id, "'"));
  }
  if (!spec.ok()) {
    // Over this server's limits is not damage: kept for a server with more.
    const bool refused =
        spec.status().code() == absl::StatusCode::kResourceExhausted;
    SetAside(path, refused ? ".rejected" : ".corrupt", spec.status());
    return false;
  }
  auto session = sessions_->Create(*std::move(spec), limits_);
  if (!session.ok()) {
    SetAside(path, ".rejected", session.status());
    return false;
  }
  saved_[id] = (*session)->values()->version;
  return true;
}

absl::StatusOr<bool> SessionPersistence::Write(const Session& session,
                                               const ValueSet& values) {
  ASSIGN_OR_RETURN(std::string bytes, codec_->Encode(SpecOf(session, values)));
  const std::string path = PathOf(session.id());
  const std::string temp = absl::StrCat(dir_, "/", session.id(), kTempSuffix);
  RETURN_IF_ERROR(WriteSynced(temp, bytes));
  std::lock_guard<std::mutex> lock(files_mu_);
  if (!sessions_->Contains(session.id())) {
    std::remove(temp.c_str());
    return false;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(temp.c_str());
    return Errno(error, "cannot rename into place", path);
  }
  return true;
}

SnapshotReport SessionPersistence::Snapshot() {
  std::lock_guard<std::mutex> pass(pass_mu_);
  SnapshotReport report;
  std::set<std::string> live;
  for (const auto& session : sessions_->All()) {
    live.insert(session->id());
    // The current version is immutable: a step running meanwhile publishes
    // a new one and leaves this one whole.
    const auto values = session->values();
    auto saved = saved_.find(session->id());
    if (saved != saved_.end() && saved->second == values->version) continue;
    absl::StatusOr<bool> written = Write(*session, *values);
    if (!written.ok()) {
      ++report.failed;
      Log(absl::StrCat(
          "snapshot of session '", session->id(),
          "' failed (its last snapshot stays): ", written.status().message()));
    } else if (*written) {
      ++report.written;
      saved_[session->id()] = values->version;
    }
  }
  for (auto it = saved_.begin(); it != saved_.end();) {
    if (live.count(it->first) > 0) {
      ++it;
      continue;
    }
    std::remove(PathOf(it->first).c_str());  // gone already if closed
    ++report.deleted;
    it = saved_.erase(it);
  }
  if (report.written > 0 || report.deleted > 0) {
    if (absl::Status s = SyncDir(dir_); !s.ok()) Log(std::string(s.message()));
  }
  return report;
}

void SessionPersistence::Forget(const std::string& session_id) {
  {
    std::lock_guard<std::mutex> lock(files_mu_);
    std::remove(PathOf(session_id).c_str());
  }
  if (absl::Status s = SyncDir(dir_); !s.ok()) Log(std::string(s.message()));
}

void SessionPersistence::Start() {
  std::lock_guard<std::mutex> lock(loop_mu_);
  if (loop_.joinable() || stopping_) return;
  loop_ = std::thread([this] { Loop(); });
}

void SessionPersistence::Stop() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
}

void SessionPersistence::Loop() {
  const auto interval = absl::ToChronoMilliseconds(interval_);
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    Snapshot();
    lock.lock();
  }
}

SnapshotReport SessionPersistence::StopAndSnapshot() {
  Stop();
  SnapshotReport report = Snapshot();
  Log(absl::StrCat("state_dir ", dir_, ": last snapshot: ", report.written,
                   " session(s) written, ", report.failed, " failed"));
  return report;
}

}  // namespace gradserve::runtime
