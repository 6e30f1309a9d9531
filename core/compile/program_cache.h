// A bounded cache of compiled programs, least recently used out first,
// keyed by a graph's structure key and a request's ProgramKey (never by
// parameter values). Stateless calls and sessions share it: a repeated
// request of the same structure does no planning at all.
#ifndef GRADSERVE_CORE_COMPILE_PROGRAM_CACHE_H_
#define GRADSERVE_CORE_COMPILE_PROGRAM_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/compile/program.h"

namespace gradserve {

struct ProgramCacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;
  int64_t entries = 0;
  int64_t bytes = 0;  // estimated, as Program::bytes() plus the keys
  int64_t capacity_bytes = 0;
};

class ProgramCache {
 public:
  // Holds programs of at most `capacity_bytes` in all; 0 caches nothing.
  explicit ProgramCache(int64_t capacity_bytes)
      : capacity_bytes_(capacity_bytes) {}

  using IndexSource =
      std::function<absl::StatusOr<std::shared_ptr<const GraphIndex>>()>;

  // The program for (graph_key, request): cached, or compiled from the index
  // `index` gives (called only on a miss) and then cached.
  absl::StatusOr<std::shared_ptr<const Program>> GetOrCompile(
      absl::string_view graph_key, const ProgramRequest& request,
      const IndexSource& index, const Limits& limits);

  // The program for (graph_key, request) when cached (a hit), else null
  // (no miss counted: GetOrCompile counts it when it compiles).
  std::shared_ptr<const Program> Cached(absl::string_view graph_key,
                                        const ProgramRequest& request);

  ProgramCacheStats stats() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Program> program;
    int64_t bytes;
  };

  // `count_miss`: whether a miss counts in the stats.
  std::shared_ptr<const Program> Find(const std::string& key,
                                      bool count_miss = true);
  void Insert(std::string key, std::shared_ptr<const Program> program);

  const int64_t capacity_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  absl::flat_hash_map<absl::string_view, std::list<Entry>::iterator> entries_;
  ProgramCacheStats stats_;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_COMPILE_PROGRAM_CACHE_H_
