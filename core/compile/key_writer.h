// Canonical, unambiguous bytes for cache keys: every field is written with
// its length, so that no two different sequences of fields give equal keys.
#ifndef GRADSERVE_CORE_COMPILE_KEY_WRITER_H_
#define GRADSERVE_CORE_COMPILE_KEY_WRITER_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/tensor.h"

namespace gradserve {

class KeyWriter {
 public:
  KeyWriter& Int(int64_t v) {
    char bytes[sizeof(v)];
    std::memcpy(bytes, &v, sizeof(v));
    out_.append(bytes, sizeof(v));
    return *this;
  }
  KeyWriter& Double(double v) {
    int64_t bits;
    std::memcpy(&bits, &v, sizeof(v));
    return Int(bits);
  }
  KeyWriter& Str(absl::string_view s) {
    Int(static_cast<int64_t>(s.size()));
    out_.append(s.data(), s.size());
    return *this;
  }
  KeyWriter& Ints(absl::Span<const int64_t> v) {
    Int(static_cast<int64_t>(v.size()));
    for (int64_t x : v) Int(x);
    return *this;
  }
  KeyWriter& Meta(const TensorMeta& meta) {
    Int(static_cast<int64_t>(meta.dtype));
    return Ints(meta.shape);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_COMPILE_KEY_WRITER_H_
