#include "server/allocator.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

namespace gradserve::server {

void RetainFreedMemory(int64_t megabytes) {
  if (megabytes <= 0) return;
  const int64_t bytes = std::min<int64_t>(megabytes << 20, INT_MAX);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes));
}

}  // namespace gradserve::server
