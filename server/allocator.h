// Process-wide allocator settings for serving large tensors.
#ifndef GRADSERVE_SERVER_ALLOCATOR_H_
#define GRADSERVE_SERVER_ALLOCATOR_H_

#include <cstdint>

namespace gradserve::server {

// Keeps up to `megabytes` of freed memory in the process for reuse, and
// serves blocks up to that size from it, instead of mapping fresh pages for
// every multi-megabyte tensor and returning them at free (glibc's default).
// Each request copies its tensors several times (wire, protobuf, core);
// fresh pages fault on first touch, which profiling showed to cost as much
// as the copies themselves (a 64 MiB Compute: 19k faults and twice the CPU
// per byte of a 16 MiB one, until every thread shared the one arena that
// can keep blocks over 64 MiB). 0 leaves glibc's defaults.
void RetainFreedMemory(int64_t megabytes);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_ALLOCATOR_H_
