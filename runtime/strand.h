// A strand runs its tasks one at a time, in the order they were submitted,
// on a compute pool: a session's steps apply in arrival order while other
// sessions' run in parallel, and no worker waits on a lock meanwhile.
#ifndef GRADSERVE_RUNTIME_STRAND_H_
#define GRADSERVE_RUNTIME_STRAND_H_

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "runtime/compute_pool.h"

namespace gradserve::runtime {

class Strand : public std::enable_shared_from_this<Strand> {
 public:
  static std::shared_ptr<Strand> Create(ComputePool* pool, size_t max_queue);

  // Queues `task` behind the strand's earlier ones; false when the strand
  // already holds `max_queue` tasks or the pool refuses work. Each task
  // waits its turn on the pool under its own `key` (ComputePool::Submit).
  bool Submit(absl::string_view key, std::function<void()> task);
  bool Submit(std::function<void()> task) {
    return Submit("", std::move(task));
  }

 private:
  Strand(ComputePool* pool, size_t max_queue)
      : pool_(pool), max_queue_(max_queue) {}
  struct Task {
    std::string key;
    std::function<void()> run;
  };
  bool SubmitRunNext(absl::string_view key);
  void RunNext();

  ComputePool* const pool_;
  const size_t max_queue_;
  std::mutex mu_;
  std::deque<Task> tasks_;
  bool scheduled_ = false;  // a RunNext is queued on the pool or running
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_STRAND_H_
