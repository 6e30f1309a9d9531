// Requests' tensors checked on the wire, before a call is queued: what the
// codecs would refuse is refused with their message, what parses and passes
// them passes, and nothing is refused that parsing would accept.
#include "server/codec/wire_check.h"

#include <string>
#include <vector>

#include "gradserve/v1/gradient_service.pb.h"
#include "gradserve/v1/session.pb.h"
#include "gtest/gtest.h"
#include "server/codec/tensor_codec.h"
#include "server/rpc.h"

namespace gradserve::server {
namespace {

// A float32 tensor that claims `shape` and carries `values` floats (a lie
// when they differ), all zeros.
pb::Tensor Floats(const std::vector<int64_t>& shape, size_t values) {
  pb::Tensor t;
  t.mutable_data()->resize(values * sizeof(float));
  for (int64_t dim : shape) t.add_shape(dim);
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  return t;
}

pb::ComputeRequest Honest() {
  pb::ComputeRequest r;
  pb::Graph* g = r.mutable_graph();
  g->add_inputs("x");
  (*g->mutable_parameters())["W"] = Floats({4, 8}, 32);
  (*r.mutable_feeds())["x"] = Floats({2, 8}, 16);
  pb::Tensor labels;
  labels.set_dtype(pb::DATA_TYPE_INT64);
  labels.add_shape(2);
  labels.add_int64_values(1);
  labels.add_int64_values(300);  // a varint of two bytes, packed
  (*r.mutable_feeds())["labels"] = labels;
  pb::Tensor seed;
  seed.set_dtype(pb::DATA_TYPE_FLOAT32);
  seed.add_shape(2);
  seed.add_shape(4);
  for (int i = 0; i < 8; ++i) seed.add_float_values(0.5f);
  (*r.mutable_output_gradients())["y"] = seed;
  r.set_loss("L");
  return r;
}

grpc::ByteBuffer Bytes(const google::protobuf::Message& m) {
  grpc::ByteBuffer out;
  EXPECT_TRUE(SerializeMessage(m, &out).ok());
  return out;
}

grpc::ByteBuffer Raw(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

const WireCheck& ComputeCheck() {
  static const WireCheck check(*pb::ComputeRequest::descriptor());
  return check;
}

TEST(WireCheck, AnHonestRequestPasses) {
  EXPECT_TRUE(ComputeCheck().Check(Bytes(Honest()), Limits{}).ok());
}

// The message CheckTensor gives the same tensor once parsed.
void ExpectRefusedAsTheCodecWould(const pb::ComputeRequest& r,
                                  const std::string& feed) {
  absl::Status wire = ComputeCheck().Check(Bytes(r), Limits{});
  absl::Status codec =
      CheckTensor(r.feeds().at(feed), Keyed("feeds", feed), Limits{}).status();
  ASSERT_FALSE(codec.ok());
  EXPECT_EQ(wire, codec);
}

TEST(WireCheck, AShapeLargerThanItsDataIsRefusedAsTheCodecWould) {
  pb::ComputeRequest r = Honest();
  (*r.mutable_feeds())["x"] = Floats({4096, 4096}, 16);
  ExpectRefusedAsTheCodecWould(r, "x");
  EXPECT_NE(ComputeCheck()
                .Check(Bytes(r), Limits{})
                .message()
                .find("feeds['x']: data has 64 bytes, expected 67108864"),
            std::string::npos);
}

TEST(WireCheck, DataLargerThanItsShapeAndOverflowingShapesAreRefused) {
  pb::ComputeRequest r = Honest();
  (*r.mutable_feeds())["x"] = Floats({2, 8}, 1 << 18);
  ExpectRefusedAsTheCodecWould(r, "x");
  (*r.mutable_feeds())["x"] = Floats({int64_t{1} << 40, int64_t{1} << 40}, 1);
  ExpectRefusedAsTheCodecWould(r, "x");
  pb::Tensor counts = r.feeds().at("labels");
  counts.add_int64_values(7);  // 3 values for shape [2]
  (*r.mutable_feeds())["x"] = Floats({2, 8}, 16);
  (*r.mutable_feeds())["labels"] = counts;
  ExpectRefusedAsTheCodecWould(r, "labels");
}

TEST(WireCheck, OutputGradientsAreCheckedToo) {
  pb::ComputeRequest r = Honest();
  r.mutable_output_gradients()->at("y").add_float_values(1);
  absl::Status wire = ComputeCheck().Check(Bytes(r), Limits{});
  EXPECT_EQ(wire.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wire.message().find("output_gradients['y']: float_values has 9"),
            std::string::npos)
      << wire;
}

TEST(WireCheck, ALengthPastTheEndDoesNotParse) {
  // Field 4 (feeds) said to be 1 GiB long, in 10 bytes.
  const std::string lie = std::string("\x22\x80\x80\x80\x80\x04", 6) + "abcd";
  absl::Status wire = ComputeCheck().Check(Raw(lie), Limits{});
  pb::ComputeRequest parsed;
  EXPECT_EQ(wire, ParseMessage(Raw(lie), &parsed));
  EXPECT_EQ(wire.code(), absl::StatusCode::kInvalidArgument);
}

TEST(WireCheck, WhatParsingKeepsIsWhatIsChecked) {
  // A key sent twice: parsing keeps the last value, a good one.
  pb::ComputeRequest bad;
  (*bad.mutable_feeds())["x"] = Floats({4096, 4096}, 1);
  pb::ComputeRequest good = Honest();
  const std::string both = bad.SerializeAsString() + good.SerializeAsString();
  pb::ComputeRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(both));
  ASSERT_EQ(parsed.feeds().at("x").data().size(), 64u);
  EXPECT_TRUE(ComputeCheck().Check(Raw(both), Limits{}).ok());
  // The other way round, the bad one is kept.
  EXPECT_FALSE(
      ComputeCheck()
          .Check(Raw(good.SerializeAsString() + bad.SerializeAsString()),
                 Limits{})
          .ok());
}

TEST(WireCheck, TensorsInSharedMemoryAreLeftToTheCodec) {
  pb::ComputeRequest r = Honest();
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  t.add_shape(1000);
  t.mutable_shared_memory()->set_region("r");
  t.mutable_shared_memory()->set_byte_size(3);  // the codec says so later
  (*r.mutable_feeds())["x"] = t;
  EXPECT_TRUE(ComputeCheck().Check(Bytes(r), Limits{}).ok());
}

TEST(WireCheck, EveryTensorMapOfARequestIsChecked) {
  pb::SetParametersRequest r;
  r.set_session_id("s");
  (*r.mutable_optimizer_state())["m"] = Floats({3}, 2);
  const WireCheck check(*pb::SetParametersRequest::descriptor());
  absl::Status wire = check.Check(Bytes(r), Limits{});
  EXPECT_NE(wire.message().find("optimizer_state['m']"), std::string::npos)
      << wire;
  // A request with no tensor maps passes whatever its bytes.
  const WireCheck none(*pb::CloseSessionRequest::descriptor());
  EXPECT_TRUE(none.Check(Raw("\xff\xff"), Limits{}).ok());
}

}  // namespace
}  // namespace gradserve::server
