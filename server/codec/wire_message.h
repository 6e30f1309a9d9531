// Replies that send tensors without copying them: a message written in the
// protobuf wire format as a list of slices, where every large tensor's
// values are one slice over the tensor's own storage, kept alive until gRPC
// has sent it. Fields may come in any order on the wire, so the message's
// other fields are serialized by protobuf ("the rest") and the tensor fields
// are written after them.
#ifndef GRADSERVE_SERVER_CODEC_WIRE_MESSAGE_H_
#define GRADSERVE_SERVER_CODEC_WIRE_MESSAGE_H_

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace gradserve::server {

class WireMessage {
 public:
  // An entry of a map<string, Tensor> field, or all of them.
  void AddTensorEntry(int field, const std::string& key, const Tensor& t);
  void AddTensorMap(int field, const std::map<std::string, Tensor>& tensors);
  // A singular Tensor field.
  void AddTensor(int field, const Tensor& t);
  // A message field written by another WireMessage.
  void AddMessage(int field, WireMessage&& inner);
  // The fields protobuf serializes.
  void AddRest(const google::protobuf::MessageLite& rest);

  size_t size() const { return size_; }
  // The whole message, as slices; the writer is left empty.
  void Finish(grpc::ByteBuffer* out);

 private:
  // The tag and length of a length-delimited field.
  void Header(int field, size_t length);
  void Varint(uint64_t v);
  void Bytes(const void* data, size_t n);
  // A tensor's message: dtype, shape and its values (`wire` is plain,
  // float32 or int64).
  void TensorBody(const Tensor& wire);
  void FlushPending();

  std::vector<grpc::Slice> slices_;
  std::string pending_;  // small writes, gathered into one slice
  size_t size_ = 0;
};

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_WIRE_MESSAGE_H_
