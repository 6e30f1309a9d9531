// Node attributes: typed values, the specs ops declare, and checked access.
#ifndef GRADSERVE_CORE_ATTRIBUTES_H_
#define GRADSERVE_CORE_ATTRIBUTES_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradserve {

enum class AttrType { kInt, kFloat, kString, kInts, kFloats };
absl::string_view AttrTypeName(AttrType type);

using AttrValue = std::variant<int64_t, double, std::string,
                               std::vector<int64_t>, std::vector<double>>;

AttrType TypeOf(const AttrValue& value);
std::string AttrValueToString(const AttrValue& value);

// The largest value of an attribute that is a spatial extent (kernel,
// stride, padding, dilation, groups), and of the extents derived from it:
// oneDNN keeps such sizes in int, whatever dnnl_dim_t holds.
constexpr int64_t kMaxAttrExtent = std::numeric_limits<int32_t>::max();

// One attribute an op accepts. `default_value` empty = required.
struct AttrSpec {
  std::string name;
  AttrType type;
  std::optional<AttrValue> default_value;
  std::string description;
  // A string is accepted too (Conv's padding "same" / "valid").
  bool or_string = false;
};

using AttrMap = absl::flat_hash_map<std::string, AttrValue>;

// The attributes of one node, checked against its op's specs: every given
// name is declared, every type fits (an int is accepted for a float, and for
// ints, where it is repeated to the length the op asks for).
class Attributes {
 public:
  // `node` and `op` name the node in messages.
  static absl::StatusOr<Attributes> Create(absl::string_view node,
                                           absl::string_view op, AttrMap given,
                                           const std::vector<AttrSpec>& specs);

  // Whether the value is a string (for specs with or_string).
  bool IsString(absl::string_view name) const;
  // Whether the value is one int (for an ints spec given a single int).
  bool IsInt(absl::string_view name) const;
  int64_t GetInt(absl::string_view name) const;
  double GetFloat(absl::string_view name) const;
  const std::string& GetString(absl::string_view name) const;
  std::vector<double> GetFloats(absl::string_view name) const;
  // Ints of exactly `length` values (a single given int is repeated), or of
  // any length when `length` is 0.
  absl::StatusOr<std::vector<int64_t>> GetInts(absl::string_view name,
                                               size_t length = 0) const;
  // GetInts() with every value in [min, max], else INVALID_ARGUMENT naming
  // the node, the attribute, the range and what came.
  absl::StatusOr<std::vector<int64_t>> GetIntsInRange(absl::string_view name,
                                                      size_t length,
                                                      int64_t min,
                                                      int64_t max) const;
  bool Has(absl::string_view name) const { return values_.contains(name); }

  // A message naming the node and attribute, for range errors.
  absl::Status Invalid(absl::string_view name,
                       absl::string_view expected) const;

 private:
  std::string label_;  // "node 'fc1' (Linear)"
  AttrMap values_;     // given values, with defaults filled in
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_ATTRIBUTES_H_
