#include "runtime/fair_queue.h"

#include <utility>

namespace gradserve::runtime {

void FairQueue::Push(absl::string_view key, Task task) {
  auto [it, added] = tasks_.try_emplace(std::string(key));
  if (added) turns_.push_back(it->first);
  it->second.push_back(std::move(task));
  ++size_;
}

FairQueue::Task FairQueue::Pop() {
  auto it = tasks_.find(turns_.front());
  turns_.pop_front();
  Task task = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) {
    tasks_.erase(it);
  } else {
    turns_.push_back(it->first);
  }
  --size_;
  return task;
}

}  // namespace gradserve::runtime
