// How a finished call of gradserve.v1.GradientService went, told to the
// metrics and the access log. The service fills one per unary call and one
// per ComputeStream (when it ends); it never holds request contents.
#ifndef GRADSERVE_SERVER_CALL_OBSERVER_H_
#define GRADSERVE_SERVER_CALL_OBSERVER_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace gradserve::server {

struct CallRecord {
  int method = 0;            // its index in GradientService (MethodName)
  absl::string_view peer;    // gRPC's peer: "ipv4:127.0.0.1:40000"
  absl::string_view tenant;  // "" without tokens, or when refused
  grpc::StatusCode code = grpc::StatusCode::OK;
  int64_t bytes_in = 0;     // request messages, serialized
  int64_t bytes_out = 0;    // reply messages, serialized
  int64_t nanoseconds = 0;  // from the call's arrival to its status
  // Refusals held back (server/refusal_pacer.h): 1 or 0 for a unary call,
  // a ComputeStream's items; and how long, summed.
  int64_t paced_refusals = 0;
  int64_t paced_nanoseconds = 0;
};

class CallObserver {
 public:
  virtual ~CallObserver() = default;
  // On the thread that finishes the call, before its status is sent:
  // cheap, never blocking for long.
  virtual void OnCall(const CallRecord& call) = 0;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CALL_OBSERVER_H_
