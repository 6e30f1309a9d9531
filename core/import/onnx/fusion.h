// Patterns of ONNX nodes the import folds into one gradserve op before the
// op table sees them: the Erf form of GELU that torch.onnx.export writes
// (ONNX has no Gelu op before opset 20):
//   d = Div(x, √2); e = Erf(d); a = Add(e, 1); m = Mul(x, a); y = Mul(m, 0.5)
// becomes y = GELU(x). The intermediate values may be read by nothing else.
#ifndef GRADSERVE_CORE_IMPORT_ONNX_FUSION_H_
#define GRADSERVE_CORE_IMPORT_ONNX_FUSION_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "onnx/onnx_pb.h"

namespace gradserve::onnx_import {

// What becomes of a node that is part of a folded pattern.
struct Fused {
  // Empty: the node vanishes (its value is folded into a later node's op).
  // Else the gradserve op the node becomes, reading `input` and writing
  // the node's first output.
  std::string op;
  std::string input;
};

// By node index, the nodes of `graph` in folded patterns.
absl::flat_hash_map<int, Fused> FindFusions(const onnx::GraphProto& graph);

}  // namespace gradserve::onnx_import

#endif  // GRADSERVE_CORE_IMPORT_ONNX_FUSION_H_
