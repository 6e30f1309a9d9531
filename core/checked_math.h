// Overflow-checked int64 arithmetic for shapes, strides, paddings, element
// counts and byte sizes: nullopt where the exact result does not fit, never
// undefined behaviour. Callers turn nullopt into a status that names what
// overflowed; the saturating forms serve estimates (FLOP counts) and
// products already known to fit.
#ifndef GRADSERVE_CORE_CHECKED_MATH_H_
#define GRADSERVE_CORE_CHECKED_MATH_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include "absl/types/span.h"

namespace gradserve {

// Whether a double converts to int64 without overflow (NaN does not).
inline bool FitsInt64(double v) { return v >= -0x1p63 && v < 0x1p63; }

inline std::optional<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> CheckedSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Π values (1 for none; 0 when one is 0), or nullopt when the product does
// not fit.
inline std::optional<int64_t> CheckedProduct(absl::Span<const int64_t> values) {
  if (std::find(values.begin(), values.end(), 0) != values.end()) return 0;
  std::optional<int64_t> product = 1;
  for (int64_t v : values) {
    if (!(product = CheckedMul(*product, v))) break;
  }
  return product;
}

// a · b for a, b >= 0, saturating at INT64_MAX (a zero factor gives 0).
inline int64_t MulSat(int64_t a, int64_t b) {
  return CheckedMul(a, b).value_or(std::numeric_limits<int64_t>::max());
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_CHECKED_MATH_H_
