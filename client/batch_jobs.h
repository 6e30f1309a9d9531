// The jobs of `gradctl batch`: a data set cut into batches, or the lines of
// a JSONL manifest, each turned into one ComputeRequest when it runs.
#ifndef GRADSERVE_CLIENT_BATCH_JOBS_H_
#define GRADSERVE_CLIENT_BATCH_JOBS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/dataset.h"
#include "gradserve/v1/gradient_service.pb.h"

namespace gradserve::client {

class BatchJobs {
 public:
  virtual ~BatchJobs() = default;
  virtual int64_t size() const = 0;
  // `base` (model, fetch, loss, wrt, mode, seed) with job i's feeds and
  // overrides, and its samples (the weight of its result under --reduce
  // mean); errors name the job's files.
  virtual absl::StatusOr<gradserve::v1::ComputeRequest> Request(
      int64_t i, const gradserve::v1::ComputeRequest& base,
      int64_t* samples) const = 0;
  // What identifies the jobs (for the journal's fingerprint).
  virtual std::string Identity() const = 0;
};

// Rows [i * batch, (i + 1) * batch) of `data` for job i.
absl::StatusOr<std::unique_ptr<BatchJobs>> DataJobs(Dataset data, FeedMap feeds,
                                                    int64_t batch);

// One job a line of a JSONL file: {"feeds": {"x": "x0.npy"}, "fetch": [...],
// "loss": "L", "wrt": [...], "seeds": {"logits": "g.npy"}, "mode": "eval",
// "seed": 3, "samples": 64}; only "feeds" is required; relative paths are
// taken from the manifest's directory. "samples" defaults to the leading
// dimension of the first feed.
absl::StatusOr<std::unique_ptr<BatchJobs>> ManifestJobs(
    const std::string& path);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_BATCH_JOBS_H_
