#include "runtime/ids.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace gradserve::runtime {

std::string RandomHex(int bytes) {
  std::string raw(bytes, '\0');
  size_t filled = 0;
  while (filled < raw.size()) {
    const ssize_t n = getrandom(raw.data() + filled, raw.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();  // no kernel randomness: never hand out guessable ids
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(raw);
}

absl::Status CheckRoute(absl::string_view route) {
  bool ok = !route.empty() && route.size() <= 64;
  for (char c : route) {
    ok = ok && (absl::ascii_isalnum(c) || c == '_' || c == '-');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("route '", absl::CEscape(route.substr(0, 80)),
                   "' must be 1 to 64 letters, digits, '_' or '-'"));
}

std::string NewId(absl::string_view route) {
  return absl::StrCat(route.empty() ? RandomHex(4) : route, ".", RandomHex(16));
}

absl::string_view RouteOf(absl::string_view id) {
  const size_t dot = id.rfind('.');
  return dot == absl::string_view::npos ? absl::string_view()
                                        : id.substr(0, dot);
}

}  // namespace gradserve::runtime
