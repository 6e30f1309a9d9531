#include <cstring>

#include "gtest/gtest.h"
#include "server/codec/call_codec.h"
#include "server/codec/graph_codec.h"
#include "server/codec/tensor_codec.h"
#include "server/rpc.h"
#include "tests/status_testing.h"

namespace gradserve::server {
namespace {

pb::Tensor FloatTensor(std::vector<int64_t> shape, std::vector<float> values) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  t.set_data(values.data(), values.size() * sizeof(float));
  return t;
}

TEST(Convert, FloatDataRoundTrip) {
  pb::Tensor t = FloatTensor({2, 2}, {1, -2, 3.5, 4});
  auto core = TensorFromProto(t, "feeds['x']", Limits{});
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ(core->shape(), (Shape{2, 2}));
  EXPECT_EQ(core->data<float>()[2], 3.5f);
  pb::Tensor back;
  TensorToProto(*core, &back);
  EXPECT_EQ(back.data(), t.data());
  EXPECT_EQ(back.dtype(), pb::DATA_TYPE_FLOAT32);
}

TEST(Convert, ConvenienceValueFields) {
  pb::Tensor f;
  f.set_dtype(pb::DATA_TYPE_FLOAT32);
  f.add_shape(3);
  for (float v : {1.f, 2.f, 3.f}) f.add_float_values(v);
  auto a = TensorFromProto(f, "f", Limits{});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->data<float>()[2], 3.f);

  pb::Tensor i;
  i.set_dtype(pb::DATA_TYPE_INT64);
  i.add_shape(2);
  i.add_int64_values(7);
  i.add_int64_values(-1);
  auto b = TensorFromProto(i, "i", Limits{});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->dtype(), DType::kInt64);
  EXPECT_EQ(b->data<int64_t>()[1], -1);
}

TEST(Convert, ScalarAndEmpty) {
  auto scalar = TensorFromProto(FloatTensor({}, {2.5}), "s", Limits{});
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ(scalar->rank(), 0);
  EXPECT_EQ(scalar->data<float>()[0], 2.5f);
  auto empty = TensorFromProto(FloatTensor({0, 3}, {}), "e", Limits{});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->num_elements(), 0);
}

TEST(Convert, Bfloat16IsWidened) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_BFLOAT16);
  t.add_shape(2);
  // bfloat16 of 1.0 is 0x3f80, of -2.5 is 0xc020 (little-endian bytes).
  const unsigned char bytes[] = {0x80, 0x3f, 0x20, 0xc0};
  t.set_data(bytes, sizeof(bytes));
  auto core = TensorFromProto(t, "b", Limits{});
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ(core->dtype(), DType::kFloat32);
  EXPECT_EQ(core->data<float>()[0], 1.0f);
  EXPECT_EQ(core->data<float>()[1], -2.5f);
}

// float64 stays float64 both ways (a request with float64 tensors runs in
// float64), from data and from float_values; a byte count for float32 is
// refused.
TEST(Convert, Float64RoundTrip) {
  pb::Tensor t;
  t.set_dtype(pb::DATA_TYPE_FLOAT64);
  t.add_shape(2);
  const double values[] = {0.1, -1e300};
  t.set_data(values, sizeof(values));
  auto core = TensorFromProto(t, "d", Limits{});
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ(core->dtype(), DType::kFloat64);
  EXPECT_EQ(core->data<double>()[0], 0.1);
  EXPECT_EQ(core->data<double>()[1], -1e300);
  pb::Tensor back;
  TensorToProto(*core, &back);
  EXPECT_EQ(back.dtype(), pb::DATA_TYPE_FLOAT64);
  EXPECT_EQ(back.data(), t.data());
  pb::Tensor listed;
  listed.set_dtype(pb::DATA_TYPE_FLOAT64);
  listed.add_float_values(0.5f);
  listed.add_shape(1);
  core = TensorFromProto(listed, "d", Limits{});
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ(core->data<double>()[0], 0.5);
  t.set_data(values, 8);
  gradserve::testing::ExpectStatus(
      TensorFromProto(t, "d", Limits{}).status(),
      absl::StatusCode::kInvalidArgument,
      {"d", "8 bytes", "expected 16", "DATA_TYPE_FLOAT64 [2]"});
}

TEST(Convert, RejectsMalformedTensors) {
  Limits limits;
  limits.max_tensor_elements = 1000;
  pb::Tensor t = FloatTensor({2, 3}, {1, 2, 3, 4, 5});
  testing::ExpectStatus(CheckTensor(t, "feeds['x']", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"feeds['x']", "20 bytes", "expected 24"});

  t = FloatTensor({2, -3}, {});
  testing::ExpectStatus(CheckTensor(t, "feeds['x']", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"feeds['x']", "-3"});

  t = FloatTensor({int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40}, {});
  testing::ExpectStatus(CheckTensor(t, "feeds['x']", limits).status(),
                        absl::StatusCode::kResourceExhausted,
                        {"feeds['x']", "limit of 1000"});

  t = FloatTensor({2}, {1, 2});
  t.set_dtype(pb::DATA_TYPE_UNSPECIFIED);
  testing::ExpectStatus(CheckTensor(t, "w", limits).status(),
                        absl::StatusCode::kInvalidArgument, {"w", "dtype"});

  t = FloatTensor({2}, {1, 2});
  t.add_float_values(1);
  t.add_float_values(2);
  testing::ExpectStatus(CheckTensor(t, "w", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"w", "exactly one"});

  t = FloatTensor({2}, {});
  t.add_int64_values(1);
  t.add_int64_values(2);
  testing::ExpectStatus(CheckTensor(t, "w", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"w", "int64_values"});

  t = FloatTensor({3}, {});
  t.add_float_values(1);
  testing::ExpectStatus(CheckTensor(t, "w", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"w", "1 values", "expected 3"});
}

TEST(Convert, ChecksSharedMemoryCarriersAndRefusesThemUnread) {
  Limits limits;
  pb::Tensor t = FloatTensor({4, 2}, {});
  t.mutable_shared_memory()->set_region("r");
  t.mutable_shared_memory()->set_byte_size(32);
  auto bytes = CheckTensor(t, "feeds['x']", limits);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, 32);
  t.set_dtype(pb::DATA_TYPE_BFLOAT16);  // 2 bytes each on the wire
  testing::ExpectStatus(
      CheckTensor(t, "feeds['x']", limits).status(),
      absl::StatusCode::kInvalidArgument,
      {"feeds['x']", "byte_size is 32", "region 'r'", "expected 16"});
  t.mutable_shared_memory()->set_byte_size(16);
  EXPECT_TRUE(CheckTensor(t, "feeds['x']", limits).ok());
  t.add_float_values(1);
  testing::ExpectStatus(CheckTensor(t, "feeds['x']", limits).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"exactly one of", "shared_memory", "got 2"});
  // Requests read their carriers first; elsewhere (snapshots) none may come.
  pb::Tensor unread = FloatTensor({2}, {});
  unread.mutable_shared_memory()->set_byte_size(8);
  testing::ExpectStatus(
      TensorFromProto(unread, "parameters['W']", limits).status(),
      absl::StatusCode::kInvalidArgument,
      {"parameters['W']", "not accepted here"});
  testing::ExpectStatus(
      TakeTensorFromProto(&unread, "parameters['W']", limits).status(),
      absl::StatusCode::kInvalidArgument, {"not accepted here"});
}

TEST(Convert, GraphAttributes) {
  pb::Graph g;
  pb::Node* n = g.add_nodes();
  n->set_name("sm");
  n->set_op("Softmax");
  (*n->mutable_attributes())["axis"].set_i(-1);
  (*n->mutable_attributes())["shape"].mutable_ints()->add_values(3);
  (*n->mutable_attributes())["factor"].set_f(0.5);
  (*n->mutable_attributes())["reduction"].set_s("sum");
  auto graph = GraphFromProto(g, Limits{});
  ASSERT_TRUE(graph.ok()) << graph.status();
  const AttrMap& a = graph->nodes[0].attributes;
  EXPECT_EQ(std::get<int64_t>(a.at("axis")), -1);
  EXPECT_EQ(std::get<std::vector<int64_t>>(a.at("shape")),
            std::vector<int64_t>{3});
  EXPECT_EQ(std::get<double>(a.at("factor")), 0.5);
  EXPECT_EQ(std::get<std::string>(a.at("reduction")), "sum");

  (*n->mutable_attributes())["empty"];  // no member of the oneof set
  testing::ExpectStatus(GraphFromProto(g, Limits{}).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"node 'sm'", "'empty'"});
}

TEST(Convert, RequestTotalBytesAreBoundedBeforeConversion) {
  pb::ComputeRequest r;
  r.mutable_graph();
  (*r.mutable_feeds())["a"] = FloatTensor({100}, std::vector<float>(100));
  (*r.mutable_feeds())["b"] = FloatTensor({100}, std::vector<float>(100));
  Limits limits;
  limits.max_request_bytes = 600;
  testing::ExpectStatus(ComputeCallFromProto(r, limits).status(),
                        absl::StatusCode::kResourceExhausted,
                        {"800 bytes", "limit of 600"});
}

TEST(Convert, ModelIsOneOfGraphOnnxOrSession) {
  pb::ComputeRequest r;
  testing::ExpectStatus(ComputeCallFromProto(r, Limits{}).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"no model", "graph", "onnx_model", "session_id"});
  r.set_onnx_model("\x08\x01");
  auto onnx = ComputeCallFromProto(r, Limits{});
  ASSERT_TRUE(onnx.ok()) << onnx.status();
  EXPECT_EQ(onnx->model.kind, runtime::ModelSource::Kind::kOnnx);
  r.set_session_id("s1");
  auto session = ComputeCallFromProto(r, Limits{});
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->model.kind, runtime::ModelSource::Kind::kSession);
  EXPECT_EQ(session->model.session_id, "s1");
}

TEST(Convert, StatusCodesCarryOver) {
  grpc::Status s = ToGrpcStatus(absl::ResourceExhaustedError("too big"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "too big");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace gradserve::server
