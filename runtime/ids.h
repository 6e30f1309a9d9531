// Ids of sessions and activations: 128 random bits from the kernel's CSPRNG
// (unguessable), after a route that balancers hash on to reach the replica
// holding the object: "<route>.<32 hex digits>".
#ifndef GRADSERVE_RUNTIME_IDS_H_
#define GRADSERVE_RUNTIME_IDS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gradserve::runtime {

// `bytes` random bytes as lowercase hex.
std::string RandomHex(int bytes);

// A route a client may choose: 1 to 64 of [A-Za-z0-9_-].
absl::Status CheckRoute(absl::string_view route);

// A new id under `route` (a random route when empty).
std::string NewId(absl::string_view route);

// The route part of an id ("" when it has none).
absl::string_view RouteOf(absl::string_view id);

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_IDS_H_
