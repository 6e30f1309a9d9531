// `gradctl batch --reduce`: per-job results combined into one, in job order
// (so the result does not depend on which call finished first).
#ifndef GRADSERVE_CLIENT_REDUCTION_H_
#define GRADSERVE_CLIENT_REDUCTION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/npz.h"

namespace gradserve::client {

// Gradients and scalar outputs (a job's "gradients/NAME", "outputs/NAME"
// arrays): summed (kSum: the gradient of a loss with reduction "sum" over
// the whole data set), or weighted by each job's samples and divided by all
// the samples (kMean: that of a loss with reduction "mean"). Outputs with a
// leading sample axis are concatenated in job order; buffers are left out.
// Sums are taken in double.
class Reduction {
 public:
  enum class Kind { kSum, kMean };
  explicit Reduction(Kind kind) : kind_(kind) {}

  // Adds job results in job order; errors name the job and array.
  absl::Status Add(const Arrays& job, int64_t samples, const std::string& what);
  // The combined arrays, and "samples" (int64 scalar: all the samples).
  Arrays Result() const;

 private:
  struct Sum {
    gradserve::v1::Tensor like;  // dtype and shape
    std::vector<double> values;
  };
  absl::Status AddSum(const std::string& name, const gradserve::v1::Tensor& t,
                      double weight, const std::string& what);

  const Kind kind_;
  int64_t samples_ = 0;
  std::map<std::string, Sum> sums_;
  std::map<std::string, std::vector<gradserve::v1::Tensor>> concatenated_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_REDUCTION_H_
