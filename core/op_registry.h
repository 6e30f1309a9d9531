// The process-wide table of ops. Each op file adds itself with one line:
//   REGISTER_OP(LinearSchema());
#ifndef GRADSERVE_CORE_OP_REGISTRY_H_
#define GRADSERVE_CORE_OP_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "core/op.h"

namespace gradserve {

class OpRegistry {
 public:
  static OpRegistry& Global();

  // Returns true so that it can initialise a static; a second schema of the
  // same name is a programming error and aborts at start-up.
  bool Register(OpSchema schema);
  const OpSchema* Find(absl::string_view name) const;
  // Sorted by name.
  std::vector<const OpSchema*> All() const;

 private:
  absl::flat_hash_map<std::string, OpSchema> ops_;
};

}  // namespace gradserve

#define GS_REGISTER_CONCAT_INNER_(a, b) a##b
#define GS_REGISTER_CONCAT_(a, b) GS_REGISTER_CONCAT_INNER_(a, b)
#define REGISTER_OP(schema)                                            \
  static const bool GS_REGISTER_CONCAT_(gs_op_registered_, __LINE__) = \
      ::gradserve::OpRegistry::Global().Register(schema)

#endif  // GRADSERVE_CORE_OP_REGISTRY_H_
