// A function run every interval on a thread of its own, until destroyed.
#ifndef GRADSERVE_RUNTIME_PERIODIC_H_
#define GRADSERVE_RUNTIME_PERIODIC_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace gradserve::runtime {

class Periodic {
 public:
  // The first run is one interval from now.
  Periodic(absl::Duration interval, std::function<void()> tick);
  // Stops and joins; a run in progress finishes first.
  ~Periodic();
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

 private:
  void Loop();

  const absl::Duration interval_;
  const std::function<void()> tick_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_PERIODIC_H_
