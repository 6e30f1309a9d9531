#include "runtime/memory_budget.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gradserve::runtime {

MemoryBudget::Reservation& MemoryBudget::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void MemoryBudget::Reservation::Release() {
  if (budget_ != nullptr) budget_->in_use_.fetch_sub(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<MemoryBudget::Reservation> MemoryBudget::Reserve(
    int64_t bytes, absl::string_view what) {
  int64_t used = in_use_.load();
  do {
    if (bytes > capacity_ - used) {
      return absl::ResourceExhaustedError(absl::StrCat(
          what, " needs ", bytes, " bytes, but requests in flight hold ", used,
          " of the server's ", capacity_,
          " (--max_inflight_bytes); retry later"));
    }
  } while (!in_use_.compare_exchange_weak(used, used + bytes));
  return Reservation(this, bytes);
}

}  // namespace gradserve::runtime
