// What a fuzz case holds that the mutator may change, collected afresh
// before each change (a change may invalidate the pointers). Maps are
// walked through their generated API, never through reflection, so that
// their entries stay where the pointers say.
#ifndef GRADSERVE_TESTS_FUZZ_SITES_H_
#define GRADSERVE_TESTS_FUZZ_SITES_H_

#include <string>
#include <vector>

#include "fuzz_case.pb.h"
#include "google/protobuf/map.h"

namespace gradserve::fuzz {

namespace pb = ::gradserve::v1;
using TensorMap = google::protobuf::Map<std::string, pb::Tensor>;
using ShapeMap = google::protobuf::Map<std::string, pb::TensorShape>;

// One field of one message: a singular field, or all of a repeated one.
struct FieldRef {
  google::protobuf::Message* message;
  const google::protobuf::FieldDescriptor* field;
};

struct Sites {
  std::vector<pb::Graph*> graphs;
  std::vector<std::pair<pb::Graph*, pb::Node*>> nodes;
  std::vector<pb::Tensor*> tensors;
  std::vector<pb::TensorShape*> shapes;
  std::vector<TensorMap*> tensor_maps;
  std::vector<ShapeMap*> shape_maps;
  // String fields that name graph values (fetch, wrt, loss, frozen, names,
  // node and graph inputs and outputs, node names).
  std::vector<FieldRef> names;
  // Every other scalar field (numbers, flags, enums, ids, labels).
  std::vector<FieldRef> scalars;
  // Repeated message fields: nodes, session steps, backwards.
  std::vector<FieldRef> lists;
  // Bytes fields (tensor data, ONNX models) a byte-level mutation may
  // change.
  std::vector<FieldRef> bytes;
  // Value names seen anywhere in the case, for rewiring and naming.
  std::vector<std::string> values;
  // The scenario's graph (CreateSession's for a session scenario).
  pb::Graph* main_graph = nullptr;
};

Sites Collect(FuzzCase* c);

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_SITES_H_
