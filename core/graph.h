// A graph as core sees it: the wire Graph without protobuf.
#ifndef GRADSERVE_CORE_GRAPH_H_
#define GRADSERVE_CORE_GRAPH_H_

#include <map>
#include <string>
#include <vector>

#include "core/attributes.h"
#include "core/tensor.h"

namespace gradserve {

struct NodeDef {
  std::string name;
  std::string op;
  std::vector<std::string> inputs;  // "" = optional input left out
  std::vector<std::string> outputs;
  AttrMap attributes;
};

struct GraphDef {
  std::vector<NodeDef> nodes;
  std::vector<std::string> inputs;
  std::map<std::string, Tensor> parameters;
  std::map<std::string, Tensor> buffers;
  std::vector<std::string> outputs;
};

// Sizes a request may not exceed; checked before anything is allocated.
struct Limits {
  int64_t max_tensor_elements = int64_t{1} << 28;
  int64_t max_graph_nodes = 10000;
  // Inputs of one node (Concat's are many): each costs the server far more
  // to plan than the few bytes of its name in a request.
  int64_t max_node_inputs = 8192;
  int64_t max_request_bytes = int64_t{4} << 30;
  // Most bytes of results (outputs, gradients, buffers) one reply may carry:
  // the server's largest message.
  int64_t max_result_bytes = int64_t{4} << 30;
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_GRAPH_H_
