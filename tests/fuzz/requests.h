// Requests made from other requests, for the runner's checks and the
// mutator's conversions between scenarios.
#ifndef GRADSERVE_TESTS_FUZZ_REQUESTS_H_
#define GRADSERVE_TESTS_FUZZ_REQUESTS_H_

#include "fuzz_case.pb.h"

namespace gradserve::fuzz {

namespace pb = ::gradserve::v1;

// The one Compute that a Forward and then this Backward amount to.
pb::ComputeRequest ComputeOf(const pb::ForwardRequest& f,
                             const pb::BackwardRequest& b);

// A Forward of the same model, feeds, fetch, loss, wrt, mode and seed.
pb::ForwardRequest ForwardOf(const pb::ComputeRequest& c);

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_REQUESTS_H_
