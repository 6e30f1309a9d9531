#include "runtime/strand.h"

namespace gradserve::runtime {

std::shared_ptr<Strand> Strand::Create(ComputePool* pool, size_t max_queue) {
  return std::shared_ptr<Strand>(new Strand(pool, max_queue));
}

bool Strand::Submit(absl::string_view key, std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (tasks_.size() >= max_queue_) return false;
  if (!scheduled_) {
    if (!SubmitRunNext(key)) return false;
    scheduled_ = true;
  }
  tasks_.push_back({std::string(key), std::move(task)});
  return true;
}

// The pool runs the strand's next task in the turn of that task's key.
bool Strand::SubmitRunNext(absl::string_view key) {
  return pool_->Submit(key, [self = shared_from_this()] { self->RunNext(); });
}

// Runs the oldest task, then hands the rest back to the pool so that other
// work queued meanwhile gets its turn; when the pool is full the strand goes
// on here rather than drop a task it accepted.
void Strand::RunNext() {
  for (;;) {
    std::function<void()> task;
    {
      std::lock_guard<std::mutex> lock(mu_);
      task = std::move(tasks_.front().run);
      tasks_.pop_front();
    }
    task();
    std::lock_guard<std::mutex> lock(mu_);
    if (tasks_.empty()) {
      scheduled_ = false;
      return;
    }
    if (SubmitRunNext(tasks_.front().key)) return;
  }
}

}  // namespace gradserve::runtime
