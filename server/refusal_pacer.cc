#include "server/refusal_pacer.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"

namespace gradserve::server {

std::string HostOfPeer(absl::string_view peer) {
  if (!absl::StartsWith(peer, "ipv4:") && !absl::StartsWith(peer, "ipv6:")) {
    return std::string(peer);
  }
  const size_t colon = peer.rfind(':');
  // "ipv6:[::1]:5012": the port's colon comes after the bracket.
  const size_t bracket = peer.rfind(']');
  if (bracket != absl::string_view::npos && colon < bracket) {
    return std::string(peer);
  }
  return std::string(peer.substr(0, colon));
}

RefusalPace::RefusalPace(const PaceOptions& options)
    : interval_(options.per_second > 0 ? absl::Seconds(1 / options.per_second)
                                       : absl::ZeroDuration()),
      tolerance_(interval_ * std::max<int64_t>(0, options.burst)),
      max_delay_(std::max(options.max_delay, absl::ZeroDuration())) {}

absl::Duration RefusalPace::Next(const std::string& host, absl::Time now) {
  if (due_.size() >= kMaxHosts && !due_.contains(host)) Forget(now);
  auto [it, added] = due_.try_emplace(host, now);
  const absl::Time turn = std::max(it->second, now);
  const absl::Duration wait =
      std::max(turn - tolerance_ - now, absl::ZeroDuration());
  // Past the longest hold a refusal is held that long and takes no turn:
  // the host's pace is at most max_delay ahead of it, and recovers as soon
  // as the host stops.
  if (wait > max_delay_) return max_delay_;
  it->second = turn + interval_;
  return wait;
}

void RefusalPace::Forget(absl::Time now) {
  absl::erase_if(due_, [now](const auto& host) { return host.second <= now; });
  if (due_.size() >= kMaxHosts) due_.clear();
}

RefusalPacer::RefusalPacer(const PaceOptions& options)
    : enabled_(options.per_second > 0 &&
               options.max_delay > absl::ZeroDuration()),
      max_waiting_(options.max_waiting),
      pace_(options) {
  if (enabled_) thread_ = std::thread([this] { Loop(); });
}

RefusalPacer::~RefusalPacer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  changed_.Signal();
  if (thread_.joinable()) thread_.join();
}

bool RefusalPacer::Hold(absl::string_view peer,
                        std::function<void(absl::Duration)> answer) {
  if (!enabled_) return false;
  const std::string host = HostOfPeer(peer);
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  const absl::Duration wait = pace_.Next(host, now);
  if (wait == absl::ZeroDuration() || stopping_ ||
      static_cast<int64_t>(waiting_.size()) >= max_waiting_) {
    return false;
  }
  ++held_;
  auto it = waiting_.emplace(
      now + wait, [answer = std::move(answer), wait] { answer(wait); });
  if (it == waiting_.begin()) changed_.Signal();
  return true;
}

int64_t RefusalPacer::held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

// Answers each held refusal when its wait is over (all of them at once
// when stopping), outside the lock.
void RefusalPacer::Loop() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (waiting_.empty()) {
      if (stopping_) return;
      changed_.Wait(&mu_);
      continue;
    }
    auto first = waiting_.begin();
    if (!stopping_ && first->first > absl::Now()) {
      changed_.WaitWithDeadline(&mu_, first->first);
      continue;
    }
    std::function<void()> answer = std::move(first->second);
    waiting_.erase(first);
    mu_.Unlock();
    answer();
    mu_.Lock();
  }
}

}  // namespace gradserve::server
