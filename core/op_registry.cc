#include "core/op_registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace gradserve {

OpRegistry& OpRegistry::Global() {
  static auto* registry = new OpRegistry();
  return *registry;
}

bool OpRegistry::Register(OpSchema schema) {
  std::string name = schema.name;
  if (!ops_.emplace(name, std::move(schema)).second) {
    std::fprintf(stderr, "gradserve: op '%s' registered twice\n", name.c_str());
    std::abort();
  }
  return true;
}

const OpSchema* OpRegistry::Find(absl::string_view name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<const OpSchema*> OpRegistry::All() const {
  std::vector<const OpSchema*> all;
  for (const auto& [name, schema] : ops_) all.push_back(&schema);
  std::sort(all.begin(), all.end(), [](const OpSchema* a, const OpSchema* b) {
    return a->name < b->name;
  });
  return all;
}

}  // namespace gradserve
