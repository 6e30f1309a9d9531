// Runs one fuzz input the way the RPCs do: each request is decoded by the
// server's codecs (server/codec), handed to the runtime use case, and the
// result encoded again. Any status is an answer; INTERNAL (or UNKNOWN,
// DATA_LOSS) is a bug and aborts, and so does a broken promise of the API:
// a rerun that differs, a Backward that differs from Compute, a missing
// fetched value or gradient, a SetParameters that does not read back.
#ifndef GRADSERVE_TESTS_FUZZ_SCENARIO_H_
#define GRADSERVE_TESTS_FUZZ_SCENARIO_H_

#include "fuzz_case.pb.h"
#include "runtime/compute_pool.h"
#include "runtime/runtime.h"

namespace gradserve::fuzz {

// Small limits, so that every input runs in milliseconds and the limit
// checks themselves are in reach of the mutator.
runtime::RuntimeOptions FuzzRuntimeOptions();

// Runs `c` on a fresh runtime over `pool`, on the calling thread.
void RunCase(const FuzzCase& c, runtime::ComputePool& pool);

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_SCENARIO_H_
