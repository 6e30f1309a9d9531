#include "server/codec/wire_message.h"

#include "gradserve/v1/tensor.pb.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

namespace pb = ::gradserve::v1;

// Values below this are copied into the header slice: a slice of their own
// costs more than the copy.
constexpr size_t kOwnSliceBytes = 64 * 1024;
constexpr int kLengthDelimited = 2;
constexpr int kVarintType = 0;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

size_t TagSize(int field) {
  return VarintSize(static_cast<uint64_t>(field) << 3);
}

size_t LengthDelimitedSize(int field, size_t length) {
  return TagSize(field) + VarintSize(length) + length;
}

size_t ShapeBytes(const Tensor& t) {
  size_t n = 0;
  for (int64_t d : t.shape()) n += VarintSize(static_cast<uint64_t>(d));
  return n;
}

size_t TensorBodySize(const Tensor& wire) {
  size_t n = TagSize(pb::Tensor::kDtypeFieldNumber) + 1;
  if (wire.rank() > 0) {
    n += LengthDelimitedSize(pb::Tensor::kShapeFieldNumber, ShapeBytes(wire));
  }
  if (wire.num_bytes() > 0) {
    n += LengthDelimitedSize(pb::Tensor::kDataFieldNumber, wire.num_bytes());
  }
  return n;
}

void ReleaseTensor(void* tensor) { delete static_cast<Tensor*>(tensor); }

}  // namespace

void WireMessage::Varint(uint64_t v) {
  while (v >= 0x80) {
    pending_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  pending_.push_back(static_cast<char>(v));
}

void WireMessage::Header(int field, size_t length) {
  Varint((static_cast<uint64_t>(field) << 3) | kLengthDelimited);
  Varint(length);
}

void WireMessage::Bytes(const void* data, size_t n) {
  pending_.append(static_cast<const char*>(data), n);
}

void WireMessage::FlushPending() {
  if (pending_.empty()) return;
  slices_.emplace_back(pending_);
  pending_.clear();
}

void WireMessage::TensorBody(const Tensor& wire) {
  Varint((static_cast<uint64_t>(pb::Tensor::kDtypeFieldNumber) << 3) |
         kVarintType);
  Varint(WireDataType(wire.dtype()));
  if (wire.rank() > 0) {
    Header(pb::Tensor::kShapeFieldNumber, ShapeBytes(wire));
    for (int64_t d : wire.shape()) Varint(static_cast<uint64_t>(d));
  }
  const size_t bytes = wire.num_bytes();
  if (bytes == 0) return;
  Header(pb::Tensor::kDataFieldNumber, bytes);
  if (bytes < kOwnSliceBytes) {
    Bytes(wire.raw_data(), bytes);
    return;
  }
  FlushPending();
  auto* owner = new Tensor(wire);
  slices_.emplace_back(const_cast<void*>(owner->raw_data()), bytes,
                       ReleaseTensor, owner);
}

void WireMessage::AddTensorEntry(int field, const std::string& key,
                                 const Tensor& t) {
  const Tensor& wire = t;  // float32, int64, or a float64 request's float64
  const size_t body = TensorBodySize(wire);
  const size_t entry =
      LengthDelimitedSize(1, key.size()) + LengthDelimitedSize(2, body);
  const size_t before = size_;
  Header(field, entry);
  Header(1, key.size());
  Bytes(key.data(), key.size());
  Header(2, body);
  TensorBody(wire);
  size_ = before + LengthDelimitedSize(field, entry);
}

void WireMessage::AddTensorMap(int field,
                               const std::map<std::string, Tensor>& tensors) {
  for (const auto& [key, t] : tensors) AddTensorEntry(field, key, t);
}

void WireMessage::AddTensor(int field, const Tensor& t) {
  const Tensor& wire = t;  // float32, int64, or a float64 request's float64
  const size_t body = TensorBodySize(wire);
  Header(field, body);
  TensorBody(wire);
  size_ += LengthDelimitedSize(field, body);
}

void WireMessage::AddMessage(int field, WireMessage&& inner) {
  Header(field, inner.size_);
  size_ += LengthDelimitedSize(field, inner.size_);
  FlushPending();
  inner.FlushPending();
  for (grpc::Slice& slice : inner.slices_) slices_.push_back(std::move(slice));
  inner.slices_.clear();
  inner.size_ = 0;
}

void WireMessage::AddRest(const google::protobuf::MessageLite& rest) {
  const size_t before = pending_.size();
  rest.AppendToString(&pending_);
  size_ += pending_.size() - before;
}

void WireMessage::Finish(grpc::ByteBuffer* out) {
  FlushPending();
  grpc::ByteBuffer buffer(slices_.data(), slices_.size());
  out->Swap(&buffer);
  slices_.clear();
  size_ = 0;
}

}  // namespace gradserve::server
