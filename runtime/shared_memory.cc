#include "runtime/shared_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace gradserve::runtime {

struct SharedMemoryDirectory {
  std::string path;
  int fd = -1;
  uid_t owner = 0;  // the user registered files must belong to
  ~SharedMemoryDirectory() {
    if (fd >= 0) close(fd);
  }
};

struct SharedMemoryRegion {
  std::shared_ptr<const SharedMemoryDirectory> dir;
  std::string name;
  std::string key;  // the file's name in dir
  int fd = -1;
  uint64_t offset = 0;  // in the file
  uint64_t byte_size = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string tenant;
  std::string connection;
  TenantQuotas::Hold quota;  // the tenant's share; released when dropped
  absl::Time registered;
  std::atomic<int64_t> last_used_ns{0};
  std::atomic<bool> removed{false};

  ~SharedMemoryRegion() {
    if (fd >= 0) close(fd);
  }
  void Touch() { last_used_ns = absl::ToUnixNanos(absl::Now()); }
  std::string Describe() const {
    return absl::StrCat("region '", name, "' (file '", key, "' in ", dir->path,
                        ")");
  }
};

namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// 1-256 printable ASCII characters: names appear in messages.
absl::Status CheckRegionName(const std::string& region) {
  bool printable = !region.empty() && region.size() <= 256;
  for (char c : region) printable = printable && c >= 0x20 && c < 0x7f;
  if (printable) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "region: give a name of 1 to 256 printable ASCII characters");
}

// A plain file name in the directory: nothing that leaves it.
absl::Status CheckKey(const std::string& key, const std::string& dir) {
  const bool plain =
      !key.empty() && key.size() <= 255 && key != "." && key != ".." &&
      key.find_first_of(std::string("/\0", 2)) == std::string::npos;
  if (plain) return absl::OkStatus();
  std::string shown = key;
  for (char& c : shown) {
    if (c < 0x20 || c >= 0x7f) c = '?';
  }
  return absl::InvalidArgumentError(
      absl::StrCat("key '", shown, "': must be a plain file name in ", dir,
                   " (1 to 255 bytes, no '/' or NUL, not '.' or '..')"));
}

absl::Status OpenError(int err, const std::string& key,
                       const std::string& dir) {
  const std::string file = absl::StrCat("key '", key, "' (in ", dir, ")");
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(absl::StrCat(file, ": no such file"));
    case ELOOP:
      return absl::InvalidArgumentError(absl::StrCat(
          file, " is a symbolic link; the server does not follow links"));
    case EISDIR:
      return absl::InvalidArgumentError(
          absl::StrCat(file, " is a directory, not a regular file"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(absl::StrCat(
          file, ": the server may not open it for reading and writing"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(file, ": cannot open: ", ErrnoText(err)));
  }
}

// The file's size, or an error naming the region when it is shorter than
// the registered window (truncated after registration).
absl::Status CheckLength(const SharedMemoryRegion& r, absl::string_view what) {
  struct stat st;
  if (fstat(r.fd, &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": cannot stat ", r.Describe(), ": ", ErrnoText(errno)));
  }
  if (static_cast<uint64_t>(st.st_size) >= r.offset + r.byte_size) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", r.Describe(), " was truncated to ", st.st_size,
                   " bytes after registration; the region ends at byte ",
                   r.offset + r.byte_size, " (register it again)"));
}

}  // namespace

// ---------------------------------------------------------------- spans

const std::string& SharedMemorySpan::region() const { return region_->name; }

absl::Status SharedMemorySpan::CheckFile(absl::string_view what) const {
  const SharedMemoryRegion& r = *region_;
  if (r.removed) {
    return absl::NotFoundError(absl::StrCat(what, ": shared-memory region '",
                                            r.name, "' was unregistered"));
  }
  struct stat st;
  if (fstatat(r.dir->fd, r.key.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      st.st_dev != r.dev || st.st_ino != r.ino) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": ", r.Describe(),
                     " was replaced or removed after registration (the path "
                     "names another file now); register it again"));
  }
  return CheckLength(r, what);
}

absl::Status SharedMemorySpan::Read(void* dst, absl::string_view what) const {
  RETURN_IF_ERROR(CheckFile(what));
  region_->Touch();
  auto* out = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < size_) {
    const ssize_t n = pread(region_->fd, out + done, size_ - done,
                            static_cast<off_t>(file_offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": reading ", region_->Describe(), ": ", ErrnoText(errno)));
    }
    if (n == 0) return CheckLength(*region_, what);  // truncated meanwhile
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SharedMemorySpan::Write(const void* src,
                                     absl::string_view what) const {
  RETURN_IF_ERROR(CheckFile(what));
  region_->Touch();
  const auto* in = static_cast<const char*>(src);
  uint64_t done = 0;
  while (done < size_) {
    const ssize_t n = pwrite(region_->fd, in + done, size_ - done,
                             static_cast<off_t>(file_offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": writing ", region_->Describe(), ": ",
                       n < 0 ? ErrnoText(errno) : "nothing written"));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

bool SharedMemorySpan::Overlaps(const SharedMemorySpan& other) const {
  if (size_ == 0 || other.size_ == 0) return false;
  if (region_->dev != other.region_->dev ||
      region_->ino != other.region_->ino) {
    return false;
  }
  return file_offset_ < other.file_offset_ + other.size_ &&
         other.file_offset_ < file_offset_ + size_;
}

// ---------------------------------------------------------------- registry

SharedMemoryRegistry::~SharedMemoryRegistry() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, region] : regions_) {
    region->removed = true;
    region->quota.Release();
  }
}

absl::Status SharedMemoryRegistry::Enable(const SharedMemoryOptions& options) {
  if (enabled()) {
    return absl::FailedPreconditionError("shared memory is already on");
  }
  if (options.max_regions < 0 || options.max_bytes < 0) {
    return absl::InvalidArgumentError(
        "shared memory: the region and byte limits must be >= 0");
  }
  auto dir = std::make_shared<SharedMemoryDirectory>();
  dir->path = options.directory;
  dir->owner = geteuid();
  dir->fd = open(options.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir->fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shared_memory_dir: cannot open directory '",
                     options.directory, "': ", ErrnoText(errno)));
  }
  std::lock_guard<std::mutex> lock(mu_);  // the janitor reads options_
  options_ = options;
  dir_ = std::move(dir);
  return absl::OkStatus();
}

absl::Status SharedMemoryRegistry::CheckEnabled(absl::string_view what) const {
  if (enabled()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what,
                   ": shared memory is off on this server (start gradserve "
                   "with --allow_shared_memory)"));
}

absl::Status SharedMemoryRegistry::CheckLimits(const std::string& tenant,
                                               uint64_t byte_size) const {
  auto it = per_tenant_.find(tenant);
  const int64_t held = it == per_tenant_.end() ? 0 : it->second;
  if (held >= options_.max_regions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("RegisterSharedMemory: the caller holds ", held,
                     " regions, the most the server allows "
                     "(--shared_memory_max_regions); unregister some first"));
  }
  if (byte_size > static_cast<uint64_t>(options_.max_bytes - bytes_)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("RegisterSharedMemory: a region of ", byte_size,
                     " bytes, with registered regions spanning ", bytes_,
                     ", is over the server's ", options_.max_bytes,
                     " (--shared_memory_max_bytes)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<SharedMemoryRegion>> SharedMemoryRegistry::Open(
    const std::string& region, const std::string& key, uint64_t offset,
    uint64_t byte_size) const {
  auto r = std::make_shared<SharedMemoryRegion>();
  r->dir = dir_;
  r->name = region;
  r->key = key;
  r->offset = offset;
  r->byte_size = byte_size;
  r->fd = openat(dir_->fd, key.c_str(),
                 O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (r->fd < 0) return OpenError(errno, key, dir_->path);
  struct stat st;
  if (fstat(r->fd, &st) != 0) return OpenError(errno, key, dir_->path);
  const std::string file =
      absl::StrCat("key '", key, "' (in ", dir_->path, ")");
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, " is not a regular file"));
  }
  if (st.st_uid != dir_->owner) {
    return absl::PermissionDeniedError(
        absl::StrCat(file, " belongs to uid ", st.st_uid,
                     "; the server opens only files of its own user (uid ",
                     dir_->owner, ")"));
  }
  if (static_cast<uint64_t>(st.st_size) < offset + byte_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, " is ", st.st_size, " bytes; region '", region, "' (offset ",
        offset, ", byte_size ", byte_size, ") ends past it"));
  }
  r->dev = st.st_dev;
  r->ino = st.st_ino;
  return r;
}

absl::Status SharedMemoryRegistry::Register(const CallContext& ctx,
                                            const std::string& region,
                                            const std::string& key,
                                            uint64_t offset,
                                            uint64_t byte_size) {
  RETURN_IF_ERROR(CheckEnabled("RegisterSharedMemory"));
  RETURN_IF_ERROR(CheckRegionName(region));
  RETURN_IF_ERROR(CheckKey(key, dir_->path));
  constexpr uint64_t kMaxEnd = std::numeric_limits<int64_t>::max();
  if (byte_size == 0 || offset > kMaxEnd || byte_size > kMaxEnd - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "region '", region, "': byte_size must be > 0 and offset + byte_size ",
        "at most 2^63-1 (offset ", offset, ", byte_size ", byte_size, ")"));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckLimits(ctx.tenant, byte_size));
  }
  auto opened = Open(region, key, offset, byte_size);
  if (!opened.ok()) return opened.status();
  std::shared_ptr<SharedMemoryRegion> r = *std::move(opened);
  r->tenant = ctx.tenant;
  r->connection = ctx.connection;
  r->registered = absl::Now();
  r->Touch();
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLimits(ctx.tenant, byte_size));  // raced
  if (regions_.contains(KeyOf(ctx, region))) {
    return absl::AlreadyExistsError(
        absl::StrCat("region '", region,
                     "' is already registered by this caller; unregister it "
                     "first"));
  }
  if (quotas_ != nullptr) {
    ASSIGN_OR_RETURN(
        r->quota,
        quotas_->Acquire(ctx.tenant, {0, static_cast<int64_t>(byte_size), 0},
                         absl::StrCat("RegisterSharedMemory '", region, "'")));
  }
  regions_.emplace(KeyOf(ctx, region), r);
  ++per_tenant_[ctx.tenant];
  bytes_ += static_cast<int64_t>(byte_size);
  return absl::OkStatus();
}

void SharedMemoryRegistry::Drop(Map::iterator it) {
  SharedMemoryRegion& r = *it->second;
  r.removed = true;
  r.quota.Release();
  bytes_ -= static_cast<int64_t>(r.byte_size);
  if (--per_tenant_[r.tenant] == 0) per_tenant_.erase(r.tenant);
  regions_.erase(it);
}

absl::Status SharedMemoryRegistry::Unregister(const CallContext& ctx,
                                              const std::string& region) {
  RETURN_IF_ERROR(CheckEnabled("UnregisterSharedMemory"));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(KeyOf(ctx, region));
  if (it == regions_.end()) {
    return absl::NotFoundError(
        absl::StrCat("region '", region, "' is not registered by this caller"));
  }
  Drop(it);
  return absl::OkStatus();
}

absl::StatusOr<SharedMemorySpan> SharedMemoryRegistry::Find(
    const CallContext& ctx, const SharedMemoryRef& ref,
    absl::string_view what) {
  RETURN_IF_ERROR(CheckEnabled(what));
  SharedMemorySpan span;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(KeyOf(ctx, ref.region));
    if (it == regions_.end()) {
      return absl::NotFoundError(absl::StrCat(
          what, ": shared-memory region '", ref.region,
          "' is not registered by this caller (regions belong to the "
          "connection that registered them)"));
    }
    span.region_ = it->second;
  }
  const SharedMemoryRegion& r = *span.region_;
  if (ref.offset > r.byte_size || ref.byte_size > r.byte_size - ref.offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": offset ", ref.offset, " + byte_size ", ref.byte_size,
        " is past the end of shared-memory region '", r.name, "' (",
        r.byte_size, " bytes)"));
  }
  span.file_offset_ = r.offset + ref.offset;
  span.size_ = ref.byte_size;
  span.region_->Touch();
  return span;
}

void SharedMemoryRegistry::Expire(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (options_.ttl_seconds == 0) return;
  const int64_t cutoff =
      absl::ToUnixNanos(now - absl::Seconds(options_.ttl_seconds));
  for (auto it = regions_.begin(); it != regions_.end();) {
    auto next = std::next(it);
    if (it->second->last_used_ns < cutoff) Drop(it);
    it = next;
  }
}

int SharedMemoryRegistry::RetainConnections(
    const absl::flat_hash_set<std::string>& live, absl::Time listed_at) {
  std::lock_guard<std::mutex> lock(mu_);
  int dropped = 0;
  for (auto it = regions_.begin(); it != regions_.end();) {
    auto next = std::next(it);
    const SharedMemoryRegion& r = *it->second;
    if (!r.connection.empty() && r.registered < listed_at &&
        !live.contains(r.connection)) {
      Drop(it);
      ++dropped;
    }
    it = next;
  }
  return dropped;
}

int64_t SharedMemoryRegistry::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(regions_.size());
}

int64_t SharedMemoryRegistry::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace gradserve::runtime
