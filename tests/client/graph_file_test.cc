#include "client/graph_file.h"

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::client {
namespace {

const std::string kExamples = GRADSERVE_SOURCE_DIR "/examples/";

TEST(GraphFile, ExamplesParseToTheSameGraph) {
  auto json = ReadGraph(kExamples + "mlp.json");
  ASSERT_TRUE(json.ok()) << json.status();
  auto text = ReadGraph(kExamples + "mlp.pbtxt");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*json, *text));
  ASSERT_EQ(json->nodes_size(), 4);
  EXPECT_EQ(json->nodes(3).op(), "CrossEntropyLoss");
  EXPECT_EQ(json->parameters().at("W1").float_values_size(), 32);
}

TEST(GraphFile, TextFormatErrorsCarryTheLine) {
  testing::ExpectStatus(
      ParseGraph("nodes {\n  name: \"a\"\n  opp: \"ReLU\"\n}\n", "bad.pbtxt")
          .status(),
      absl::StatusCode::kInvalidArgument, {"bad.pbtxt", "line 3", "opp"});
}

TEST(GraphFile, JsonErrorsNameTheFile) {
  testing::ExpectStatus(
      ParseGraph("{\"nodes\": [{\"nmae\": \"a\"}]}", "bad.json").status(),
      absl::StatusCode::kInvalidArgument, {"bad.json", "nmae"});
  testing::ExpectStatus(ParseGraph("{", "cut.json").status(),
                        absl::StatusCode::kInvalidArgument, {"cut.json"});
}

TEST(GraphFile, OtherFormats) {
  testing::ExpectStatus(ParseGraph("", "model.onnx").status(),
                        absl::StatusCode::kUnimplemented,
                        {"model.onnx", "ONNX"});
  testing::ExpectStatus(ParseGraph("", "graph.yaml").status(),
                        absl::StatusCode::kInvalidArgument,
                        {"graph.yaml", ".json", ".pbtxt"});
  testing::ExpectStatus(ReadGraph("/nonexistent/g.json").status(),
                        absl::StatusCode::kNotFound, {"/nonexistent/g.json"});
}

}  // namespace
}  // namespace gradserve::client
