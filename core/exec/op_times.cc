#include "core/exec/op_times.h"

namespace gradserve {

OpTimes& OpTimes::Global() {
  static OpTimes* times = new OpTimes();
  return *times;
}

int OpTimes::Slot(absl::string_view op) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = slot_of_.find(op); it != slot_of_.end()) return it->second;
  if (names_.size() >= kMaxOps) return -1;
  const int slot = static_cast<int>(names_.size());
  names_.emplace_back(op);
  slot_of_.emplace(std::string(op), slot);
  return slot;
}

std::vector<OpTimes::Total> OpTimes::Totals() const {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    names = names_;
  }
  std::vector<Total> totals;
  totals.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    Total t{names[i], {}, {}};
    for (int d : {kForward, kBackward}) {
      const Counters& c = slots_[i].direction[d];
      t.nanoseconds[d] = c.nanoseconds.load(std::memory_order_relaxed);
      t.runs[d] = c.runs.load(std::memory_order_relaxed);
    }
    totals.push_back(std::move(t));
  }
  return totals;
}

}  // namespace gradserve
