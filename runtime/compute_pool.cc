#include "runtime/compute_pool.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <utility>

namespace gradserve::runtime {

int AvailableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

PoolShape ChoosePoolShape(PoolShape requested, int cpus) {
  PoolShape shape = requested;
  if (shape.threads_per_worker <= 0) {
    shape.threads_per_worker = shape.workers > 0
                                   ? std::max(1, cpus / shape.workers)
                                   : std::min(cpus, 4);
  }
  if (shape.workers <= 0) {
    shape.workers = std::max(1, cpus / shape.threads_per_worker);
  }
  return shape;
}

ComputePool::ComputePool(PoolShape shape, int max_queue)
    : shape_(shape), max_queue_(static_cast<size_t>(std::max(max_queue, 0))) {
  for (int i = 0; i < shape_.workers; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

ComputePool::~ComputePool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : workers_) t.join();
}

bool ComputePool::Submit(absl::string_view key, std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // In flight (running or queued) may be every worker plus max_queue.
    if (stopping_ || running_ + queue_.size() >= workers_.size() + max_queue_) {
      return false;
    }
    queue_.Push(key, std::move(task));
  }
  ready_.notify_one();
  return true;
}

ComputePool::Load ComputePool::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {static_cast<int64_t>(queue_.size()), static_cast<int64_t>(running_)};
}

void ComputePool::WorkerLoop() {
  omp_set_num_threads(shape_.threads_per_worker);
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = queue_.Pop();
      ++running_;
    }
    task();
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
}

}  // namespace gradserve::runtime
