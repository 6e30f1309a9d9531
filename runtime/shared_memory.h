// Same-host shared memory: a client registers a window of a file in one
// directory (default /dev/shm) as a named region; tensors then reference
// bytes of the region instead of carrying them, and outputs are written
// there. Off unless the server enables it.
//
// The server never maps a client's file: every access is a pread or pwrite
// on the descriptor opened at registration (one copy each way), so a client
// truncating its file makes the access fail with an error, never SIGBUS.
// Before each access the path is checked to still name the registered file
// (st_dev/st_ino) and the file to still hold the registered window.
//
// Trust model: a region is opened with the server's own rights, so the
// server only opens what a same-host client could open itself: plain file
// names in the directory (no '/', symlinks not followed), regular files
// owned by the server's user. Point the directory at one that only
// gradserve's clients can write. A region belongs to the caller's tenant
// and the connection it was registered on (CallContext); another caller's
// region is NOT_FOUND. Regions are dropped by Unregister, when their
// connection closes (the server reports live connections to
// RetainConnections), and after an idle TTL.
#ifndef GRADSERVE_RUNTIME_SHARED_MEMORY_H_
#define GRADSERVE_RUNTIME_SHARED_MEMORY_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runtime/calls.h"
#include "runtime/quotas.h"

namespace gradserve::runtime {

struct SharedMemoryOptions {
  std::string directory = "/dev/shm";
  int64_t max_regions = 64;  // per tenant
  // Bytes all registered regions together may span.
  int64_t max_bytes = int64_t{64} << 30;
  // A region not used for this long is dropped; 0 = never.
  uint32_t ttl_seconds = 600;
};

// Bytes [offset, offset + byte_size) of a region (the wire's
// SharedMemoryRef).
struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

struct SharedMemoryDirectory;  // shared_memory.cc
struct SharedMemoryRegion;

// A checked reference: bytes of a registered region's file. Reads and
// writes check the file first (still the registered one, still long
// enough); errors name `what` (the tensor) and the region.
class SharedMemorySpan {
 public:
  absl::Status Read(void* dst, absl::string_view what) const;
  absl::Status Write(const void* src, absl::string_view what) const;
  // Whether the two share a byte of one file (regions may overlap).
  bool Overlaps(const SharedMemorySpan& other) const;
  uint64_t size() const { return size_; }
  const std::string& region() const;

 private:
  friend class SharedMemoryRegistry;
  absl::Status CheckFile(absl::string_view what) const;

  std::shared_ptr<SharedMemoryRegion> region_;
  uint64_t file_offset_ = 0;
  uint64_t size_ = 0;
};

class SharedMemoryRegistry {
 public:
  // Off until enabled; `quotas` (may be null: none) counts the bytes each
  // tenant's regions span.
  explicit SharedMemoryRegistry(TenantQuotas* quotas = nullptr)
      : quotas_(quotas) {}
  ~SharedMemoryRegistry();
  SharedMemoryRegistry(const SharedMemoryRegistry&) = delete;
  SharedMemoryRegistry& operator=(const SharedMemoryRegistry&) = delete;

  // Turns shared memory on over `options.directory` (opened now: an error
  // when it is not a directory the server can open). Call once.
  absl::Status Enable(const SharedMemoryOptions& options);
  bool enabled() const { return dir_ != nullptr; }
  // FAILED_PRECONDITION naming `what` and the flag when off.
  absl::Status CheckEnabled(absl::string_view what) const;

  // Opens `key` in the directory and registers bytes [offset, offset +
  // byte_size) of it as `region` of the caller.
  absl::Status Register(const CallContext& ctx, const std::string& region,
                        const std::string& key, uint64_t offset,
                        uint64_t byte_size);
  absl::Status Unregister(const CallContext& ctx, const std::string& region);
  // `ref` checked against the caller's region: NOT_FOUND for an unknown
  // region (or another caller's), INVALID_ARGUMENT for bytes past its end.
  absl::StatusOr<SharedMemorySpan> Find(const CallContext& ctx,
                                        const SharedMemoryRef& ref,
                                        absl::string_view what);

  // Drops the regions idle for longer than the TTL.
  void Expire(absl::Time now);
  // Drops the regions of connections not in `live`, which was listed after
  // `listed_at` (regions registered later are kept: their connection may be
  // newer than the list). Regions of callers without a connection ("")
  // stay. Returns how many were dropped.
  int RetainConnections(const absl::flat_hash_set<std::string>& live,
                        absl::Time listed_at);

  int64_t count() const;
  int64_t bytes() const;
  const SharedMemoryOptions& options() const { return options_; }

 private:
  // (tenant, connection, region name)
  using Key = std::tuple<std::string, std::string, std::string>;
  using Map = absl::flat_hash_map<Key, std::shared_ptr<SharedMemoryRegion>>;
  static Key KeyOf(const CallContext& ctx, const std::string& region) {
    return {ctx.tenant, ctx.connection, region};
  }
  absl::Status CheckLimits(const std::string& tenant, uint64_t byte_size) const;
  absl::StatusOr<std::shared_ptr<SharedMemoryRegion>> Open(
      const std::string& region, const std::string& key, uint64_t offset,
      uint64_t byte_size) const;
  // Under mu_.
  void Drop(Map::iterator it);

  SharedMemoryOptions options_;
  TenantQuotas* const quotas_;
  std::shared_ptr<const SharedMemoryDirectory> dir_;  // null when off
  mutable std::mutex mu_;
  Map regions_;
  absl::flat_hash_map<std::string, int64_t> per_tenant_;
  int64_t bytes_ = 0;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_SHARED_MEMORY_H_
