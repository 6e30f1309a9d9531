#include "server/allocator.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

namespace gradserve::server {

void RetainFreedMemory(int64_t megabytes) {
  if (megabytes <= 0) return;
  const int bytes =
      static_cast<int>(std::min<int64_t>(megabytes << 20, INT_MAX));
  // One arena for every thread: glibc's per-thread arenas grow in heaps of
  // 64 MiB, so a larger block allocated on a pool or gRPC thread is always
  // mapped fresh and unmapped at free, whatever the thresholds say; the main
  // arena grows in place and keeps what is freed.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, bytes);
  mallopt(M_TRIM_THRESHOLD, bytes);
}

}  // namespace gradserve::server
