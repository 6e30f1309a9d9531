#include "client/dataset.h"

#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

// Bytes of one sample (one row along the leading axis).
size_t RowBytes(const pb::Tensor& t) {
  if (t.shape_size() == 0 || t.shape(0) == 0) return 0;
  return t.data().size() / static_cast<size_t>(t.shape(0));
}

pb::Tensor EmptyLike(const pb::Tensor& t, int64_t rows) {
  pb::Tensor out;
  out.set_dtype(t.dtype());
  out.add_shape(rows);
  for (int i = 1; i < t.shape_size(); ++i) out.add_shape(t.shape(i));
  return out;
}

std::string Names(const Arrays& arrays) {
  std::vector<std::string> names;
  for (const auto& [name, t] : arrays) names.push_back(name);
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::StatusOr<Dataset> MakeDataset(Arrays arrays, const std::string& path) {
  Dataset data{path, std::move(arrays), -1};
  if (data.arrays.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the data set holds no arrays"));
  }
  std::string first;
  for (const auto& [name, t] : data.arrays) {
    if (t.shape_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": array '", name,
          "' is a scalar; a data set's arrays have a leading sample axis"));
    }
    if (data.samples < 0) {
      data.samples = t.shape(0);
      first = name;
    } else if (t.shape(0) != data.samples) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": array '", name, "' has ", t.shape(0),
                       " samples but '", first, "' has ", data.samples,
                       "; a data set's arrays share their leading axis"));
    }
  }
  return data;
}

absl::StatusOr<Dataset> ReadDataset(const std::string& path) {
  ASSIGN_OR_RETURN(Arrays arrays, ReadNpz(path));
  return MakeDataset(std::move(arrays), path);
}

pb::Tensor Rows(const pb::Tensor& t, int64_t begin, int64_t end) {
  pb::Tensor out = EmptyLike(t, end - begin);
  const size_t row = RowBytes(t);
  out.set_data(t.data().data() + begin * row, (end - begin) * row);
  return out;
}

pb::Tensor Gather(const pb::Tensor& t, const std::vector<int64_t>& indices) {
  pb::Tensor out = EmptyLike(t, static_cast<int64_t>(indices.size()));
  const size_t row = RowBytes(t);
  std::string data(indices.size() * row, '\0');
  for (size_t i = 0; i < indices.size(); ++i) {
    std::memcpy(data.data() + i * row, t.data().data() + indices[i] * row, row);
  }
  out.set_data(std::move(data));
  return out;
}

Dataset Subset(const Dataset& data, const std::vector<int64_t>& indices) {
  Dataset subset{data.path, {}, static_cast<int64_t>(indices.size())};
  for (const auto& [name, t] : data.arrays) {
    subset.arrays[name] = Gather(t, indices);
  }
  return subset;
}

absl::StatusOr<FeedMap> ParseFeedMap(const std::vector<std::string>& args) {
  FeedMap map;
  for (const std::string& arg : args) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(arg, absl::MaxSplits('=', 1));
    if (arg.find('=') == std::string::npos || kv.first.empty() ||
        kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--map takes GRAPH_INPUT=ARRAY, got '", arg, "'"));
    }
    if (!map.emplace(kv.first, kv.second).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--map names graph input '", kv.first, "' twice"));
    }
  }
  return map;
}

absl::StatusOr<FeedMap> ResolveFeeds(const FeedMap& mapped,
                                     const pb::Graph* graph,
                                     const Dataset& data) {
  std::set<std::string> inputs;
  if (graph != nullptr)
    inputs.insert(graph->inputs().begin(), graph->inputs().end());
  FeedMap feeds;
  for (const auto& [input, array] : mapped) {
    if (graph != nullptr && inputs.count(input) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--map ", input, "=", array, ": the graph has no input '", input,
          "' (inputs: ", absl::StrJoin(graph->inputs(), ", "), ")"));
    }
    if (data.arrays.count(array) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--map ", input, "=", array, ": ", data.path, " has no array '",
          array, "' (arrays: ", Names(data.arrays), ")"));
    }
    feeds[input] = array;
  }
  if (graph != nullptr) {
    for (const std::string& input : graph->inputs()) {
      if (feeds.count(input) == 0 && data.arrays.count(input) != 0) {
        feeds[input] = input;
      }
    }
  } else if (mapped.empty()) {
    for (const auto& [name, t] : data.arrays) feeds[name] = name;
  }
  if (feeds.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        data.path,
        ": no array feeds a graph input (arrays: ", Names(data.arrays),
        "; inputs: ", graph ? absl::StrJoin(graph->inputs(), ", ") : "?",
        "); name them with --map INPUT=ARRAY"));
  }
  return feeds;
}

void FeedRows(const Dataset& data, const FeedMap& feeds, int64_t begin,
              int64_t end,
              google::protobuf::Map<std::string, pb::Tensor>* out) {
  for (const auto& [input, array] : feeds) {
    (*out)[input] = Rows(data.arrays.at(array), begin, end);
  }
}

void FeedGathered(const Dataset& data, const FeedMap& feeds,
                  const std::vector<int64_t>& indices,
                  google::protobuf::Map<std::string, pb::Tensor>* out) {
  for (const auto& [input, array] : feeds) {
    (*out)[input] = Gather(data.arrays.at(array), indices);
  }
}

}  // namespace gradserve::client
