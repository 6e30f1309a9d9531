#include "runtime/periodic.h"

#include <chrono>
#include <utility>

namespace gradserve::runtime {

Periodic::Periodic(absl::Duration interval, std::function<void()> tick)
    : interval_(interval),
      tick_(std::move(tick)),
      thread_([this] { Loop(); }) {}

Periodic::~Periodic() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Periodic::Loop() {
  const auto interval =
      std::chrono::milliseconds(absl::ToInt64Milliseconds(interval_));
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    tick_();
    lock.lock();
  }
}

}  // namespace gradserve::runtime
