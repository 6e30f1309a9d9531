// The threads that run compute, apart from gRPC's threads.
//
// W workers each run one request at a time, and each worker's oneDNN
// primitives use T OpenMP threads: every worker thread sets its own OpenMP
// thread count once (OpenMP's nthreads-var is per thread, and libgomp gives
// each non-OpenMP thread its own team), so W concurrent requests use at most
// W·T cores and never oversubscribe them. Requests beyond the W in flight
// wait in a bounded queue; a full queue refuses work. The queue is fair
// (fair_queue.h): each task has a key (the caller's tenant, or its
// connection without tenants) and keys take turns, so that a caller that
// floods the pool delays the others by one task at a time, not by its whole
// backlog.
#ifndef GRADSERVE_RUNTIME_COMPUTE_POOL_H_
#define GRADSERVE_RUNTIME_COMPUTE_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/fair_queue.h"

namespace gradserve::runtime {

struct PoolShape {
  int workers = 1;
  int threads_per_worker = 1;
};

// CPUs this process may run on (its affinity mask, which container CPU sets
// narrow).
int AvailableCpus();

// Defaults for `cpus` CPUs: T = min(cpus, 4), W = max(1, cpus / T) — one
// worker of 2 threads on 2 CPUs, 4 workers of 4 on 16. Zeros in `requested`
// are filled in; a T given alone gets W = max(1, cpus / T).
PoolShape ChoosePoolShape(PoolShape requested, int cpus);

class ComputePool {
 public:
  ComputePool(PoolShape shape, int max_queue);
  ~ComputePool();  // runs what is queued, then joins
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Queues `task` for `key` (fair_queue.h); false when `max_queue` tasks
  // already wait behind busy workers, or the pool is stopping.
  bool Submit(absl::string_view key, std::function<void()> task);
  // The same for the key "" (work of no one caller).
  bool Submit(std::function<void()> task) {
    return Submit("", std::move(task));
  }
  const PoolShape& shape() const { return shape_; }
  // Tasks waiting for a worker, and workers running one (for metrics).
  struct Load {
    int64_t queued = 0;
    int64_t running = 0;
  };
  Load load() const;

 private:
  void WorkerLoop();

  const PoolShape shape_;
  const size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable ready_;
  FairQueue queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_COMPUTE_POOL_H_
