// The request fuzzer's structure-aware mutator: a FuzzCase is parsed,
// changed the way a confused or hostile client would change a request
// (op names from the registry, inputs rewired to other values, attributes
// of each op's declared types with huge, negative and boundary values,
// tensor shapes and dtypes with their values resized to match or not,
// fetch/wrt/loss/feed names drawn from the graph, steps repeated or
// dropped, one scenario turned into another), and serialized again. Byte
// flips rarely get past the protobuf parser and the first shape check;
// these changes keep most inputs well formed enough to reach the ops.
#ifndef GRADSERVE_TESTS_FUZZ_MUTATOR_H_
#define GRADSERVE_TESTS_FUZZ_MUTATOR_H_

#include <cstddef>
#include <cstdint>
#include <random>

#include "fuzz_case.pb.h"

namespace gradserve::fuzz {

class CaseMutator {
 public:
  explicit CaseMutator(unsigned seed) : rng_(seed) {}

  // One to a few changes.
  void Mutate(FuzzCase* c);
  // Splices parts of `other` (nodes, tensors, steps) into `c`.
  void CrossOver(const FuzzCase& other, FuzzCase* c);
  // A small case from nothing: one or two random ops on random tensors.
  FuzzCase Fresh();

  std::mt19937& rng() { return rng_; }

 private:
  void MutateOnce(FuzzCase* c);
  std::mt19937 rng_;
};

// libFuzzer's entry points in bytes: parse (or start afresh), change,
// serialize into `data`; the new size, at most `max_size`.
size_t MutateBytes(uint8_t* data, size_t size, size_t max_size, unsigned seed);
size_t CrossOverBytes(const uint8_t* data1, size_t size1, const uint8_t* data2,
                      size_t size2, uint8_t* out, size_t max_out_size,
                      unsigned seed);

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_MUTATOR_H_
