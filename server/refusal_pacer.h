// Refusals of clients that keep lying about sizes, paced. A request the
// wire check refuses (server/codec/wire_check.h) costs the server little,
// but a client that sends nothing else loops as fast as its refusals come
// back, and on a shared machine its loop takes CPU from honest clients.
// So a host's refusals are answered at a paced rate: its first `burst` at
// once, then one every 1/per_second, each held back at most `max_delay`
// (the generic cell rate algorithm, as HTTP rate limiters pace requests).
// Calls that pass the wire check are never held back. The pace is per
// host (the peer's address without its port): opening a new connection
// per lie does not escape it. A held refusal holds no thread and no pool
// turn, only its request until answered; past `max_waiting` held at once,
// refusals are answered at once.
#ifndef GRADSERVE_SERVER_REFUSAL_PACER_H_
#define GRADSERVE_SERVER_REFUSAL_PACER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gradserve::server {

struct PaceOptions {
  double per_second = 50;  // 0: no pacing
  int64_t burst = 100;
  absl::Duration max_delay = absl::Seconds(1);
  int64_t max_waiting = 256;
};

// "ipv4:10.0.0.7:5012" -> "ipv4:10.0.0.7", "ipv6:[::1]:5012" ->
// "ipv6:[::1]"; other peers ("unix:...") whole.
std::string HostOfPeer(absl::string_view peer);

// The schedule alone: how long each host's next refusal waits.
class RefusalPace {
 public:
  explicit RefusalPace(const PaceOptions& options);
  // The wait of a refusal for `host` arriving at `now` (zero up to
  // max_delay); it takes the host's next turn unless held max_delay.
  absl::Duration Next(const std::string& host, absl::Time now);
  size_t hosts() const { return due_.size(); }

 private:
  // Hosts remembered at most; those whose pace has recovered go first.
  static constexpr size_t kMaxHosts = 4096;
  void Forget(absl::Time now);

  const absl::Duration interval_;
  const absl::Duration tolerance_;  // burst intervals
  const absl::Duration max_delay_;
  // Per host, when its pace has recovered (GCRA's theoretical arrival).
  absl::flat_hash_map<std::string, absl::Time> due_;
};

class RefusalPacer {
 public:
  explicit RefusalPacer(const PaceOptions& options);
  // Answers the refusals still held, then stops.
  ~RefusalPacer();
  RefusalPacer(const RefusalPacer&) = delete;
  RefusalPacer& operator=(const RefusalPacer&) = delete;

  // True when the refusal of a call from `peer` is held: answer(wait)
  // then runs on the pacer's thread once the wait is over. False when it
  // is not: the caller answers at once (and `answer` is dropped).
  bool Hold(absl::string_view peer, std::function<void(absl::Duration)> answer);
  int64_t held() const;  // refusals held back so far

 private:
  void Loop();

  const bool enabled_;
  const int64_t max_waiting_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // a refusal held first, or stopping
  RefusalPace pace_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::function<void()>> waiting_
      ABSL_GUARDED_BY(mu_);
  int64_t held_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_REFUSAL_PACER_H_
