#include "client/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace gradserve::client {
namespace {

absl::Status Failed(const std::string& path, absl::string_view what) {
  return absl::PermissionDeniedError(
      absl::StrCat(path, ": cannot ", what, " (", std::strerror(errno), ")"));
}

absl::Status WriteAndSync(int fd, const std::string& path,
                          absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Failed(path, "write");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0) return Failed(path, "flush");
  return absl::OkStatus();
}

}  // namespace

absl::Status SyncDirectory(const std::string& dir) {
  const int fd =
      ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Failed(dir, "open the directory");
  const int synced = ::fsync(fd);
  ::close(fd);
  if (synced != 0) return Failed(dir, "flush the directory");
  return absl::OkStatus();
}

absl::Status MakeDirectories(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create (", error.message(), ")"));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes) {
  static std::atomic<uint64_t> counter{0};
  const std::string temporary =
      absl::StrCat(path, ".tmp-", ::getpid(), "-", counter++);
  const int fd =
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Failed(path, "create");
  absl::Status written = WriteAndSync(fd, path, bytes);
  if (::close(fd) != 0 && written.ok()) written = Failed(path, "close");
  if (written.ok() && std::rename(temporary.c_str(), path.c_str()) != 0) {
    written = Failed(path, "rename into place");
  }
  if (!written.ok()) {
    ::unlink(temporary.c_str());
    return written;
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

}  // namespace gradserve::client
