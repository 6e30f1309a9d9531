#include "server/codec/wire_check.h"

#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "gradserve/v1/tensor.pb.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/codec/tensor_codec.h"

namespace gradserve::server {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

constexpr WireFormatLite::WireType kLen =
    WireFormatLite::WIRETYPE_LENGTH_DELIMITED;

// A tensor read as parsing would read it, minus its values. `shared`: it
// has a shared_memory carrier.
struct WireTensor {
  TensorHeader header;
  bool shared = false;
};

// A length prefix; false past what a message can hold.
bool ReadLength(CodedInputStream* in, int* length) {
  uint32_t value;
  if (!in->ReadVarint32(&value) ||
      value > static_cast<uint32_t>(std::numeric_limits<int>::max())) {
    return false;
  }
  *length = static_cast<int>(value);
  return true;
}

bool ReadPacked(CodedInputStream* in, std::vector<int64_t>* values) {
  int length;
  if (!ReadLength(in, &length)) return false;
  const auto limit = in->PushLimit(length);
  while (in->BytesUntilLimit() > 0) {
    uint64_t v;
    if (!in->ReadVarint64(&v)) return false;
    values->push_back(static_cast<int64_t>(v));
  }
  in->PopLimit(limit);
  return true;
}

// Repeated scalars, packed or not: how many `tag` brings.
bool CountRepeated(CodedInputStream* in, uint32_t tag, int fixed_size,
                   int64_t* count) {
  if (WireFormatLite::GetTagWireType(tag) != kLen) {
    ++*count;
    return WireFormatLite::SkipField(in, tag);
  }
  if (fixed_size > 0) {
    int length;
    if (!ReadLength(in, &length) || length % fixed_size != 0) return false;
    *count += length / fixed_size;
    return in->Skip(length);
  }
  std::vector<int64_t> values;
  if (!ReadPacked(in, &values)) return false;
  *count += static_cast<int64_t>(values.size());
  return true;
}

// Fields 1-6 of gradserve.v1.Tensor; a field of another wire type than
// its own is an unknown field to parsing, skipped here too.
bool ReadTensorField(CodedInputStream* in, uint32_t tag, WireTensor* t) {
  const int number = WireFormatLite::GetTagFieldNumber(tag);
  const auto type = WireFormatLite::GetTagWireType(tag);
  uint64_t v;
  switch (number) {
    case pb::Tensor::kDtypeFieldNumber:
      if (type != WireFormatLite::WIRETYPE_VARINT) break;
      if (!in->ReadVarint64(&v)) return false;
      t->header.dtype = static_cast<pb::DataType>(static_cast<int32_t>(v));
      return true;
    case pb::Tensor::kShapeFieldNumber:
      if (type == kLen) return ReadPacked(in, &t->header.shape);
      if (type != WireFormatLite::WIRETYPE_VARINT) break;
      if (!in->ReadVarint64(&v)) return false;
      t->header.shape.push_back(static_cast<int64_t>(v));
      return true;
    case pb::Tensor::kDataFieldNumber: {
      int length;
      if (type != kLen) break;
      if (!ReadLength(in, &length)) return false;
      t->header.data_bytes = length;  // the last one wins, as in parsing
      return in->Skip(length);
    }
    case pb::Tensor::kFloatValuesFieldNumber:
      if (type != kLen && type != WireFormatLite::WIRETYPE_FIXED32) break;
      return CountRepeated(in, tag, 4, &t->header.float_values);
    case pb::Tensor::kInt64ValuesFieldNumber:
      if (type != kLen && type != WireFormatLite::WIRETYPE_VARINT) break;
      return CountRepeated(in, tag, 0, &t->header.int64_values);
    case pb::Tensor::kSharedMemoryFieldNumber:
      if (type != kLen) break;
      t->shared = true;
      return WireFormatLite::SkipField(in, tag);
    default:
      break;
  }
  return WireFormatLite::SkipField(in, tag);
}

bool ReadTensor(CodedInputStream* in, WireTensor* t) {
  int length;
  if (!ReadLength(in, &length)) return false;
  const auto limit = in->PushLimit(length);
  for (uint32_t tag = in->ReadTag(); tag != 0; tag = in->ReadTag()) {
    if (!ReadTensorField(in, tag, t)) return false;
  }
  if (!in->ConsumedEntireMessage()) return false;
  in->PopLimit(limit);
  return true;
}

// One map entry: key (1) and value (2), either absent meaning empty.
bool ReadEntry(CodedInputStream* in, std::map<std::string, WireTensor>* out) {
  int length;
  if (!ReadLength(in, &length)) return false;
  const auto limit = in->PushLimit(length);
  std::string key;
  WireTensor value;
  for (uint32_t tag = in->ReadTag(); tag != 0; tag = in->ReadTag()) {
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const bool len = WireFormatLite::GetTagWireType(tag) == kLen;
    bool ok;
    if (number == 1 && len) {
      ok = WireFormatLite::ReadString(in, &key);
    } else if (number == 2 && len) {
      value = WireTensor();  // the last one wins
      ok = ReadTensor(in, &value);
    } else {
      ok = WireFormatLite::SkipField(in, tag);
    }
    if (!ok) return false;
  }
  if (!in->ConsumedEntireMessage()) return false;
  in->PopLimit(limit);
  (*out)[key] = std::move(value);  // a repeated key: the last one wins
  return true;
}

}  // namespace

absl::Status NotParsed(absl::string_view type_name, size_t bytes) {
  return absl::InvalidArgumentError(absl::StrCat("request is not a valid ",
                                                 type_name, " (", bytes,
                                                 " bytes that do not parse)"));
}

WireCheck::WireCheck(const google::protobuf::Descriptor& type)
    : type_name_(type.full_name()) {
  for (int i = 0; i < type.field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = type.field(i);
    if (field->is_map() && field->message_type()->map_value()->message_type() ==
                               pb::Tensor::descriptor()) {
      tensor_maps_.push_back({field->number(), field->name()});
    }
  }
}

const WireCheck::Field* WireCheck::FieldOf(int number) const {
  for (const Field& field : tensor_maps_) {
    if (field.number == number) return &field;
  }
  return nullptr;
}

absl::Status WireCheck::Check(const grpc::ByteBuffer& request,
                              const Limits& limits) const {
  if (tensor_maps_.empty()) return absl::OkStatus();
  grpc::ByteBuffer copy(request);  // shares the slices
  grpc::ProtoBufferReader reader(&copy);
  CodedInputStream in(&reader);
  in.SetTotalBytesLimit(std::numeric_limits<int>::max());
  std::map<int, std::map<std::string, WireTensor>> maps;
  bool parsed = true;
  for (uint32_t tag = in.ReadTag(); parsed && tag != 0; tag = in.ReadTag()) {
    const Field* field = FieldOf(WireFormatLite::GetTagFieldNumber(tag));
    parsed = field != nullptr && WireFormatLite::GetTagWireType(tag) == kLen
                 ? ReadEntry(&in, &maps[field->number])
                 : WireFormatLite::SkipField(&in, tag);
  }
  if (!parsed || !in.ConsumedEntireMessage()) {
    return NotParsed(type_name_, request.Length());
  }
  for (const auto& [number, tensors] : maps) {
    for (const auto& [name, t] : tensors) {
      if (t.shared) continue;  // the codec reads the region first
      absl::Status checked =
          CheckTensorHeader(t.header, Keyed(FieldOf(number)->name, name),
                            limits)
              .status();
      if (!checked.ok()) return checked;
    }
  }
  return absl::OkStatus();
}

}  // namespace gradserve::server
