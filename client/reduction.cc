#include "client/reduction.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/gradctl_common.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

pb::Tensor FromDoubles(const pb::Tensor& like, const std::vector<double>& v) {
  pb::Tensor t;
  t.set_dtype(like.dtype());
  *t.mutable_shape() = like.shape();
  if (like.dtype() == pb::DATA_TYPE_INT64) {
    std::vector<int64_t> raw(v.begin(), v.end());
    t.set_data(raw.data(), raw.size() * sizeof(int64_t));
  } else {
    std::vector<float> raw(v.begin(), v.end());
    t.set_data(raw.data(), raw.size() * sizeof(float));
  }
  return t;
}

pb::Tensor Concatenate(const std::vector<pb::Tensor>& parts) {
  pb::Tensor t;
  t.set_dtype(parts[0].dtype());
  *t.mutable_shape() = parts[0].shape();
  int64_t rows = 0;
  std::string data;
  for (const pb::Tensor& p : parts) {
    rows += p.shape(0);
    data += p.data();
  }
  t.set_shape(0, rows);
  t.set_data(std::move(data));
  return t;
}

}  // namespace

absl::Status Reduction::AddSum(const std::string& name, const pb::Tensor& t,
                               double weight, const std::string& what) {
  const std::vector<double> v = Values(t);
  auto [it, added] = sums_.try_emplace(name);
  Sum& sum = it->second;
  if (added) {
    sum.like = t;
    sum.like.clear_data();
    sum.values.assign(v.size(), 0.0);
  } else if (t.dtype() != sum.like.dtype() ||
             !std::equal(t.shape().begin(), t.shape().end(),
                         sum.like.shape().begin(), sum.like.shape().end())) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": '", name, "' is ", TypeName(t.dtype()), " ",
        DimsToString(t.shape()), " but was ", TypeName(sum.like.dtype()), " ",
        DimsToString(sum.like.shape()), " in the jobs before"));
  }
  for (size_t i = 0; i < v.size(); ++i) sum.values[i] += weight * v[i];
  return absl::OkStatus();
}

absl::Status Reduction::Add(const Arrays& job, int64_t samples,
                            const std::string& what) {
  samples_ += samples;
  const double weight = kind_ == Kind::kMean ? static_cast<double>(samples) : 1;
  for (const auto& [name, t] : job) {
    const bool gradient = absl::StartsWith(name, "gradients/");
    const bool output = absl::StartsWith(name, "outputs/");
    if (gradient || (output && t.shape_size() == 0)) {
      RETURN_IF_ERROR(AddSum(name, t, weight, what));
    } else if (output) {
      if (t.shape(0) != samples) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": output '", name.substr(8), "' has shape ",
                         DimsToString(t.shape()),
                         ", neither a scalar to reduce nor one row "
                         "per sample (",
                         samples, ") to concatenate; --fetch scalars"));
      }
      concatenated_[name].push_back(t);
    }
  }
  return absl::OkStatus();
}

Arrays Reduction::Result() const {
  Arrays result;
  for (const auto& [name, sum] : sums_) {
    std::vector<double> v = sum.values;
    if (kind_ == Kind::kMean && samples_ > 0) {
      for (double& x : v) x /= static_cast<double>(samples_);
    }
    result[name] = FromDoubles(sum.like, v);
  }
  for (const auto& [name, parts] : concatenated_) {
    result[name] = Concatenate(parts);
  }
  result["samples"] = Int64Scalar(samples_);
  return result;
}

}  // namespace gradserve::client
