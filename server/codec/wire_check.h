// Refusals that need no compute, made on gRPC's thread before a call is
// queued: the tensors of a request's top-level tensor maps (feeds,
// output_gradients, ...) are read from the serialized bytes, without
// copying their values, and checked as the codecs check them (CheckTensor:
// dtype, shape, element count, the bytes that carry the values). A request
// whose bytes do not parse is refused too. A lying request (a shape far
// larger than its data, a length prefix past its end) is then answered at
// once and never takes a turn on the compute pool.
//
// Only what the codecs would refuse anyway is refused here: every codec
// checks every top-level tensor map of its request. Tensors carried in
// shared memory are left to the codecs (they read the region first).
#ifndef GRADSERVE_SERVER_CODEC_WIRE_CHECK_H_
#define GRADSERVE_SERVER_CODEC_WIRE_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/byte_buffer.h"

namespace gradserve::server {

// INVALID_ARGUMENT: `bytes` bytes that do not parse as `type_name`.
absl::Status NotParsed(absl::string_view type_name, size_t bytes);

class WireCheck {
 public:
  // For requests of `type`: its map<string, gradserve.v1.Tensor> fields.
  explicit WireCheck(const google::protobuf::Descriptor& type);
  // OK when the request's tensors pass (or it has no tensor maps).
  absl::Status Check(const grpc::ByteBuffer& request,
                     const Limits& limits) const;

 private:
  struct Field {
    int number;
    std::string name;
  };
  const Field* FieldOf(int number) const;

  std::string type_name_;
  std::vector<Field> tensor_maps_;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_WIRE_CHECK_H_
