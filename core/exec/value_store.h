// Parameters and buffers live outside graphs and programs: a ValueSet is one
// immutable version of them, bound to a program at run time. A new version
// shares every tensor it does not replace, and no tensor is ever written in
// place, so a cached program, a session and a held activation may all point
// at the same tensors from several threads.
#ifndef GRADSERVE_CORE_EXEC_VALUE_STORE_H_
#define GRADSERVE_CORE_EXEC_VALUE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/tensor.h"

namespace gradserve {

struct ValueSet {
  std::map<std::string, Tensor> parameters;
  std::map<std::string, Tensor> buffers;
  // A training session's optimizer state ("W1/exp_avg", ...) and the steps
  // applied so far; empty and 0 elsewhere.
  std::map<std::string, Tensor> optimizer_state;
  int64_t step = 0;
  int64_t version = 0;  // 1 more for each version published after this one

  // The parameter or buffer of that name, or null.
  const Tensor* Find(const std::string& name) const;
  int64_t bytes() const;
};

// The current version of a set of values (a session's). Readers take a
// snapshot and never wait for a writer; writers publish whole new versions.
class ValueStore {
 public:
  explicit ValueStore(std::shared_ptr<const ValueSet> initial)
      : current_(std::move(initial)) {}

  std::shared_ptr<const ValueSet> Current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }
  void Publish(std::shared_ptr<const ValueSet> next) {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ValueSet> current_;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_EXEC_VALUE_STORE_H_
