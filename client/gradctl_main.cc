#include <malloc.h>
#include <unistd.h>

#include <iostream>

#include "client/gradctl.h"

int main(int argc, char** argv) {
  // As the server's --malloc_retain_mb (server/allocator.h): one arena, and
  // blocks up to 512 MiB kept for reuse. glibc's defaults map every block
  // over 64 MiB fresh on gRPC's threads: a 64 MiB round trip then took twice
  // the time per byte of a 16 MiB one.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  return gradserve::client::RunGradctl(argc, argv, std::cout, std::cerr,
                                       isatty(STDOUT_FILENO) == 1);
}
