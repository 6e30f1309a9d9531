// The drain of a shutting-down server: calls are admitted through a gate
// that the shutdown closes; it then waits for the admitted ones to end.
// A call refused at a closed gate has not started (UNAVAILABLE, safe to
// send again to another replica); no admitted call is cut short by it.
#ifndef GRADSERVE_SERVER_CALL_GATE_H_
#define GRADSERVE_SERVER_CALL_GATE_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gradserve::server {

class CallGate {
 public:
  // Admits a call, false once the gate is closed. Each admitted call must
  // Leave() once, when it has ended (its status sent).
  bool Enter();
  void Leave();
  // No call is admitted from now on.
  void Close();
  // Waits until `until`, or earlier once no admitted call is left and no
  // call came (admitted or refused) for `quiet`; true in the second case.
  bool WaitQuiet(absl::Time until, absl::Duration quiet);
  int64_t admitted() const;

  // The status of a call refused at a closed gate.
  static absl::Status Refused();

 private:
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_arrival_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CALL_GATE_H_
