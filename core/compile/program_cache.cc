#include "core/compile/program_cache.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace gradserve {

absl::StatusOr<std::shared_ptr<const Program>> ProgramCache::GetOrCompile(
    absl::string_view graph_key, const ProgramRequest& request,
    const IndexSource& index, const Limits& limits) {
  std::string key = absl::StrCat(graph_key, ProgramKey(request));
  if (auto program = Find(key)) return program;
  ASSIGN_OR_RETURN(std::shared_ptr<const GraphIndex> graph, index());
  // Compiled outside the lock: other requests go on meanwhile. Two threads
  // missing on one key both compile; the first to finish is kept.
  ASSIGN_OR_RETURN(std::shared_ptr<const Program> program,
                   Program::Compile(std::move(graph), request, limits));
  Insert(std::move(key), program);
  return program;
}

std::shared_ptr<const Program> ProgramCache::Cached(
    absl::string_view graph_key, const ProgramRequest& request) {
  return Find(absl::StrCat(graph_key, ProgramKey(request)),
              /*count_miss=*/false);
}

std::shared_ptr<const Program> ProgramCache::Find(const std::string& key,
                                                  bool count_miss) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (count_miss) ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->program;
}

void ProgramCache::Insert(std::string key,
                          std::shared_ptr<const Program> program) {
  const int64_t bytes = program->bytes() + static_cast<int64_t>(2 * key.size());
  if (bytes > capacity_bytes_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.contains(key)) return;
  while (!lru_.empty() && stats_.bytes + bytes > capacity_bytes_) {
    stats_.bytes -= lru_.back().bytes;
    entries_.erase(lru_.back().key);
    lru_.pop_back();
    ++stats_.evictions;
  }
  lru_.push_front(Entry{std::move(key), std::move(program), bytes});
  entries_.emplace(lru_.front().key, lru_.begin());
  stats_.bytes += bytes;
}

ProgramCacheStats ProgramCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ProgramCacheStats s = stats_;
  s.entries = static_cast<int64_t>(lru_.size());
  s.capacity_bytes = capacity_bytes_;
  return s;
}

}  // namespace gradserve
