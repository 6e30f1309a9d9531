// Tensors between the wire (gradserve.v1.Tensor) and core. Every tensor is
// checked (dtype, shape, element count, the bytes that carry its values)
// before its storage is allocated.
#ifndef GRADSERVE_SERVER_CODEC_TENSOR_CODEC_H_
#define GRADSERVE_SERVER_CODEC_TENSOR_CODEC_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "core/tensor.h"
#include "google/protobuf/map.h"
#include "gradserve/v1/tensor.pb.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;
using TensorProtoMap = google::protobuf::Map<std::string, pb::Tensor>;

// Checks a tensor's dtype, shape, element count and value fields (a
// shared_memory carrier's byte_size too); returns the bytes it takes once
// converted (bfloat16 is widened to float32). `what` names the tensor in
// messages, e.g. "feeds['x']".
absl::StatusOr<int64_t> CheckTensor(const pb::Tensor& t, absl::string_view what,
                                    const Limits& limits);

// What CheckTensor looks at: a tensor's fields but not its values (the
// count of values each field carries), e.g. read from the wire without
// copying them (wire_check.h).
struct TensorHeader {
  pb::DataType dtype = pb::DATA_TYPE_UNSPECIFIED;
  Shape shape;
  int64_t data_bytes = 0;
  int64_t float_values = 0;
  int64_t int64_values = 0;
  const pb::SharedMemoryRef* shared_memory = nullptr;  // none when null
};
absl::StatusOr<int64_t> CheckTensorHeader(const TensorHeader& t,
                                          absl::string_view what,
                                          const Limits& limits);

// A checked tensor's values in core storage. A shared_memory carrier is
// refused: requests read theirs into data first (shared_memory_codec.h).
absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t,
                                       absl::string_view what,
                                       const Limits& limits);
// The same, taking the message's `data` bytes as the tensor's storage
// instead of copying them (the message keeps the rest).
absl::StatusOr<Tensor> TakeTensorFromProto(pb::Tensor* t,
                                           absl::string_view what,
                                           const Limits& limits);
// The wire dtype of a core dtype.
pb::DataType WireDataType(DType dtype);

void TensorToProto(const Tensor& t, pb::Tensor* out);

// "feeds['x']".
std::string Keyed(absl::string_view field, absl::string_view key);

// The tensors of a request, checked together before any is converted: each
// one, and their total bytes against the request limit.
class TensorBatch {
 public:
  explicit TensorBatch(const Limits& limits) : limits_(limits) {}
  absl::Status Check(const TensorProtoMap& map, absl::string_view field);
  absl::Status Check(const pb::Tensor& t, absl::string_view what);
  // RESOURCE_EXHAUSTED when the checked tensors exceed the request limit.
  absl::Status CheckTotal() const;

 private:
  const Limits& limits_;
  int64_t bytes_ = 0;
};

// Converts a checked map into a TensorMap or a std::map, taking the
// messages' data bytes (TakeTensorFromProto).
template <typename Map = TensorMap>
absl::StatusOr<Map> TakeTensorsFromProto(TensorProtoMap* map,
                                         absl::string_view field,
                                         const Limits& limits) {
  Map tensors;
  for (auto& [name, t] : *map) {
    auto tensor = TakeTensorFromProto(&t, Keyed(field, name), limits);
    if (!tensor.ok()) return tensor.status();
    tensors[name] = *std::move(tensor);
  }
  return tensors;
}
void TensorsToProto(const std::map<std::string, Tensor>& tensors,
                    TensorProtoMap* out);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_TENSOR_CODEC_H_
