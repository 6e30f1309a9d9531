// ONNX models -> gradserve graphs, with the ONNX library Debian ships
// (libonnx: protobuf definitions, checker, shape inference, version
// converter). No protobuf types cross this header.
#ifndef GRADSERVE_CORE_IMPORT_ONNX_ONNX_IMPORT_H_
#define GRADSERVE_CORE_IMPORT_ONNX_ONNX_IMPORT_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "core/tensor.h"

namespace gradserve::onnx_import {

// The ai.onnx opsets the op table is written for; older models go through
// ONNX's version converter to kMinOpset first.
constexpr int kMinOpset = 9;
constexpr int kMaxOpset = 17;

// Decodes a serialized ModelProto, checks it with ONNX's checker, infers its
// shapes and translates it: value names stay the ONNX names, float
// initializers become parameters (those only read at import time, as shapes
// or ratios, are folded away), BatchNormalization's statistics and integer
// constants become buffers, graph inputs without initializers are the
// graph's inputs, graph outputs its outputs.
// `input_shapes` (the request's feeds, or Describe's input shapes) give the
// graph inputs' dims the model leaves symbolic (dynamic axes) before shape
// inference, so that shapes computed from them (Shape, Gather, Concat
// feeding Reshape) are known and folded: the graph is then the one for
// those shapes (the program cache keys it so). An input fed with another
// rank than declared keeps its declared dims.
// INVALID_ARGUMENT for malformed or ill-typed models (naming the node,
// attribute or tensor), UNIMPLEMENTED for ops, opsets or attribute values
// gradserve cannot run (naming the op, the node and the opset).
using InputShapes = absl::flat_hash_map<std::string, Shape>;
absl::StatusOr<GraphDef> ImportModel(absl::string_view bytes,
                                     const Limits& limits,
                                     const InputShapes& input_shapes = {});

}  // namespace gradserve::onnx_import

#endif  // GRADSERVE_CORE_IMPORT_ONNX_ONNX_IMPORT_H_
