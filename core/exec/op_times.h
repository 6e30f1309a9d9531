// Wall time spent in each op type's Forward and Backward, process-wide: the
// tape reads the steady clock around each node and adds the difference to
// its op's slot (relaxed atomic adds, no lock, no allocation); the metrics
// endpoint reads the totals. Slots are made when programs compile.
#ifndef GRADSERVE_CORE_EXEC_OP_TIMES_H_
#define GRADSERVE_CORE_EXEC_OP_TIMES_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace gradserve {

class OpTimes {
 public:
  enum Direction { kForward = 0, kBackward = 1 };
  // More op types than the registry holds; one beyond is not timed.
  static constexpr int kMaxOps = 256;

  static OpTimes& Global();

  // The slot of op type `op`, made on its first use; -1 when all are taken.
  int Slot(absl::string_view op);
  void Add(int slot, Direction direction, int64_t nanoseconds) {
    if (slot < 0) return;
    Counters& c = slots_[slot].direction[direction];
    c.nanoseconds.fetch_add(nanoseconds, std::memory_order_relaxed);
    c.runs.fetch_add(1, std::memory_order_relaxed);
  }

  struct Total {
    std::string op;
    int64_t nanoseconds[2];  // by Direction
    int64_t runs[2];
  };
  // Every op type that has a slot, in the order the slots were made.
  std::vector<Total> Totals() const;

 private:
  struct Counters {
    std::atomic<int64_t> nanoseconds{0};
    std::atomic<int64_t> runs{0};
  };
  struct alignas(64) SlotCounters {
    Counters direction[2];
  };

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, int> slot_of_;  // guarded by mu_
  std::vector<std::string> names_;                 // guarded by mu_
  std::array<SlotCounters, kMaxOps> slots_;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_EXEC_OP_TIMES_H_
