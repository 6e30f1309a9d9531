// The compute pool's queue: tasks wait per key (a tenant, or a connection
// when there are no tenants) and keys take turns, one task each, in the order
// they got work. A key that queues a hundred tasks delays another key's one
// task by at most one of its own, where a FIFO would make it wait for all a
// hundred. Within a key, tasks run in the order they were pushed.
#ifndef GRADSERVE_RUNTIME_FAIR_QUEUE_H_
#define GRADSERVE_RUNTIME_FAIR_QUEUE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/strings/string_view.h"

namespace gradserve::runtime {

class FairQueue {
 public:
  using Task = std::function<void()>;

  void Push(absl::string_view key, Task task);
  // The next key's oldest task; that key then waits for its next turn
  // behind every other key with tasks. Requires !empty().
  Task Pop();
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Keys with tasks waiting.
  size_t keys() const { return turns_.size(); }

 private:
  std::unordered_map<std::string, std::deque<Task>> tasks_;
  std::deque<std::string> turns_;  // keys with tasks, next turn first
  size_t size_ = 0;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_FAIR_QUEUE_H_
