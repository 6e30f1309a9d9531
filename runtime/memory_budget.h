// A server-wide budget of bytes: what queued and running requests hold
// (their messages, and the memory their programs may allocate), checked
// before anything is allocated. Over the budget is RESOURCE_EXHAUSTED.
#ifndef GRADSERVE_RUNTIME_MEMORY_BUDGET_H_
#define GRADSERVE_RUNTIME_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradserve::runtime {

class MemoryBudget {
 public:
  // Bytes held until destroyed (or moved from).
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation() { Release(); }
    int64_t bytes() const { return bytes_; }
    void Release();

   private:
    friend class MemoryBudget;
    Reservation(MemoryBudget* budget, int64_t bytes)
        : budget_(budget), bytes_(bytes) {}
    MemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  explicit MemoryBudget(int64_t capacity) : capacity_(capacity) {}

  // `bytes` more, or RESOURCE_EXHAUSTED naming `what` and the budget.
  absl::StatusOr<Reservation> Reserve(int64_t bytes, absl::string_view what);
  int64_t in_use() const { return in_use_.load(); }
  int64_t capacity() const { return capacity_; }

 private:
  const int64_t capacity_;
  std::atomic<int64_t> in_use_{0};
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_MEMORY_BUDGET_H_
