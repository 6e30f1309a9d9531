// Data sets for batch and train: the arrays of one .npz sharing a leading
// sample axis, sliced into batches and fed to graph inputs by --map.
#ifndef GRADSERVE_CLIENT_DATASET_H_
#define GRADSERVE_CLIENT_DATASET_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/npz.h"
#include "gradserve/v1/graph.pb.h"

namespace gradserve::client {

struct Dataset {
  std::string path;  // for messages
  Arrays arrays;
  int64_t samples = 0;  // the shared leading dimension
};

// Checks that every array has the same leading dimension (and has one).
absl::StatusOr<Dataset> MakeDataset(Arrays arrays, const std::string& path);
absl::StatusOr<Dataset> ReadDataset(const std::string& path);

// Rows [begin, end) of an array, or the rows at `indices`, in that order.
gradserve::v1::Tensor Rows(const gradserve::v1::Tensor& t, int64_t begin,
                           int64_t end);
gradserve::v1::Tensor Gather(const gradserve::v1::Tensor& t,
                             const std::vector<int64_t>& indices);
Dataset Subset(const Dataset& data, const std::vector<int64_t>& indices);

// Which array feeds which graph input: {graph input -> array}.
using FeedMap = std::map<std::string, std::string>;

// Parses --map INPUT=ARRAY arguments (usage errors for bad syntax or an
// input named twice).
absl::StatusOr<FeedMap> ParseFeedMap(const std::vector<std::string>& args);

// The feeds of a run on `graph` (null: a session, whose inputs are not
// known here): the --map pairs, then every graph input (or, without a graph,
// every array) not mapped that has an array of its own name. A mapped input
// the graph lacks or an array the data set lacks is an error naming both
// sides and what there is.
absl::StatusOr<FeedMap> ResolveFeeds(const FeedMap& mapped,
                                     const gradserve::v1::Graph* graph,
                                     const Dataset& data);

// The feeds of rows [begin, end) or of the rows at `indices`.
void FeedRows(const Dataset& data, const FeedMap& feeds, int64_t begin,
              int64_t end,
              google::protobuf::Map<std::string, gradserve::v1::Tensor>* out);
void FeedGathered(
    const Dataset& data, const FeedMap& feeds,
    const std::vector<int64_t>& indices,
    google::protobuf::Map<std::string, gradserve::v1::Tensor>* out);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_DATASET_H_
