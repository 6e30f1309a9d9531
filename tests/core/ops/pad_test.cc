// Pad: torch's values in every mode (index by index, crops included), the
// gradient of reflected elements, bad and huge pads.
#include "gtest/gtest.h"
#include "tests/core/ops/tensor_op_test_util.h"

namespace gradserve::testing {
namespace {

using V = std::vector<int64_t>;

TEST(Pad, PadModesAsTorch) {
  auto pad = [](V pads, const char* mode) {
    auto r = RunOnValues(
        OpCase("Pad", {{"x", {1, 3, 4}}}, {{"pads", pads}, {"mode", mode}}),
        {Iota({1, 3, 4})});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? FloatValues(r->outputs.at("out0")) : std::vector<float>{};
  };
  EXPECT_EQ(
      pad({2, -1}, "reflect"),
      (std::vector<float>{2, 1, 0, 1, 2, 6, 5, 4, 5, 6, 10, 9, 8, 9, 10}));
  EXPECT_EQ(pad({1, 2}, "replicate"),
            (std::vector<float>{0, 0, 1, 2, 3, 3, 3,  4,  4,  5, 6,
                                7, 7, 7, 8, 8, 9, 10, 11, 11, 11}));
  EXPECT_EQ(
      pad({-1, 2}, "circular"),
      (std::vector<float>{1, 2, 3, 1, 2, 5, 6, 7, 5, 6, 9, 10, 11, 9, 10}));
  OpCase c("Pad", {{"x", {1, 3, 4}}}, {{"pads", V{3, 1}}, {"mode", "reflect"}});
  // Under dY = 1: reflected elements collect their copies.
  auto r = RunOnValues(c, {Iota({1, 3, 4})},
                       F32({1, 3, 8}, std::vector<float>(24, 1)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(FloatValues(r->gradients.at("x")),
            (std::vector<float>{1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2}));
}

TEST(Pad, HugePadsAreTooLarge) {
  ExpectError(OpCase("Pad", {{"x", {2, 3}}},
                     {{"pads", V{int64_t{1} << 62, int64_t{1} << 62}}}),
              absl::StatusCode::kResourceExhausted, {"larger than int64"});
  ExpectError(
      OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{int64_t{1} << 40, 0}}}),
      absl::StatusCode::kResourceExhausted, {});
}

TEST(Pad, RejectsBadAttributes) {
  auto expect = [](OpCase c, std::vector<std::string> parts) {
    ExpectError(c, absl::StatusCode::kInvalidArgument, parts);
  };
  expect(OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{1, 1, 1}}}),
         {"attribute 'pads'", "even number"});
  expect(OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{1, 1, 1, 1, 1, 1}}}),
         {"attribute 'pads'", "at most 2 per dim"});
  expect(OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{-2, -2}}}),
         {"pads dim 1 (size 3)", "padded size -1 is below 0"});
  expect(
      OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{3, 0}}, {"mode", "reflect"}}),
      {"reflect needs amounts below the dim's size"});
  expect(
      OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{4, 0}}, {"mode", "circular"}}),
      {"wrap around", "at most once"});
  expect(OpCase("Pad", {{"x", {2, 3}}},
                {{"pads", V{1, 0}}, {"mode", "reflect"}, {"value", 1.0}}),
         {"attribute 'value'", "takes no value"});
  expect(OpCase("Pad", {{"x", {2, 3}}}, {{"pads", V{1, 0}}, {"mode", "edge"}}),
         {"attribute 'mode'", "\"circular\""});
}

}  // namespace
}  // namespace gradserve::testing
