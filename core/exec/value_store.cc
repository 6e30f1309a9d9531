#include "core/exec/value_store.h"

namespace gradserve {

const Tensor* ValueSet::Find(const std::string& name) const {
  if (auto p = parameters.find(name); p != parameters.end()) return &p->second;
  if (auto b = buffers.find(name); b != buffers.end()) return &b->second;
  return nullptr;
}

int64_t ValueSet::bytes() const {
  int64_t total = 0;
  for (const auto* set : {&parameters, &buffers, &optimizer_state}) {
    for (const auto& [name, t] : *set) {
      total += static_cast<int64_t>(t.storage_bytes());
    }
  }
  return total;
}

}  // namespace gradserve
