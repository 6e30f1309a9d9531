// The mutator's changes, by what they change. Each takes the case's sites
// (collected just before) for the names and tensors it may borrow.
#ifndef GRADSERVE_TESTS_FUZZ_MUTATIONS_H_
#define GRADSERVE_TESTS_FUZZ_MUTATIONS_H_

#include <string>

#include "core/op.h"
#include "tests/fuzz/random_values.h"
#include "tests/fuzz/sites.h"

namespace gradserve::fuzz {

// Tensors (tensor_mutations.cc).
void MutateTensor(pb::Tensor* t, const Sites& s, Random& r);
void MutateTensorShape(pb::TensorShape* shape, Random& r);
void MutateTensorMap(TensorMap* map, const Sites& s, Random& r);
void MutateShapeMap(ShapeMap* map, const Sites& s, Random& r);
// A small float32 (sometimes int64) tensor of random shape and values.
pb::Tensor RandomTensor(Random& r);
// The values of a tensor whose shape claims `dims`, in its carrier.
void ResizeValues(pb::Tensor* t, Random& r);

// Graphs (graph_mutations.cc).
void MutateNode(pb::Graph* g, pb::Node* n, const Sites& s, Random& r);
// A node of a random registered op on values of the case.
pb::Node RandomNode(const Sites& s, Random& r);
pb::Attribute RandomAttribute(const AttrSpec& spec, Random& r);

// A value name of the case, now and then one that names nothing.
std::string ValueName(const Sites& s, Random& r);
// A name no value of the case has.
std::string FreshName(const Sites& s, Random& r);

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_MUTATIONS_H_
