// The request fuzzer: each input is a serialized gradserve.fuzz.FuzzCase
// (fuzz_case.proto), the wire requests of one scenario (Compute; Describe;
// Forward then Backwards; CreateSession then TrainStep, SetParameters,
// GetParameters and calls on the session), run through the server's
// codecs and the runtime as the RPCs run them (scenario.h). Inputs that do
// not parse are dropped, as the server refuses them. The custom mutator
// (mutator.h) changes requests field by field instead of byte by byte.
#include <omp.h>

#include <cstddef>
#include <cstdint>

#include "google/protobuf/stubs/logging.h"
#include "runtime/compute_pool.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/scenario.h"

namespace {

gradserve::runtime::ComputePool& Pool() {
  // The runtime's pool, for sessions' strands. The cases run on libFuzzer's
  // thread (a hand-off to a worker cost a fifth of the time), with one
  // OpenMP thread as a small server's worker has.
  static auto* pool = new gradserve::runtime::ComputePool({1, 1}, 4);
  return *pool;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Protobuf's log lines for refused strings would drown libFuzzer's.
  google::protobuf::SetLogHandler(nullptr);
  omp_set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gradserve::fuzz::FuzzCase c;
  if (!c.ParseFromArray(data, static_cast<int>(size))) return -1;
  gradserve::fuzz::RunCase(c, Pool());
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size,
                                          size_t max_size, unsigned seed) {
  return gradserve::fuzz::MutateBytes(data, size, max_size, seed);
}

extern "C" size_t LLVMFuzzerCustomCrossOver(const uint8_t* data1, size_t size1,
                                            const uint8_t* data2, size_t size2,
                                            uint8_t* out, size_t max_out_size,
                                            unsigned seed) {
  return gradserve::fuzz::CrossOverBytes(data1, size1, data2, size2, out,
                                         max_out_size, seed);
}
