// The checked arithmetic helpers, and the element-count rule every tensor
// the planner sees must pass.
#include "core/checked_math.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/tensor.h"
#include "gtest/gtest.h"
#include "tests/status_testing.h"

namespace gradserve::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(CheckedMath, AddSubMulInRange) {
  EXPECT_EQ(CheckedAdd(kMax - 1, 1), kMax);
  EXPECT_EQ(CheckedAdd(kMin, kMax), -1);
  EXPECT_EQ(CheckedSub(kMin + 1, 1), kMin);
  EXPECT_EQ(CheckedSub(0, kMax), -kMax);
  EXPECT_EQ(CheckedMul(int64_t{1} << 31, int64_t{1} << 31), int64_t{1} << 62);
  EXPECT_EQ(CheckedMul(-1, kMax), -kMax);
  EXPECT_EQ(CheckedMul(kMin, 0), 0);
}

TEST(CheckedMath, AddSubMulOverflow) {
  EXPECT_EQ(CheckedAdd(kMax, 1), std::nullopt);
  EXPECT_EQ(CheckedAdd(kMin, -1), std::nullopt);
  EXPECT_EQ(CheckedSub(kMin, 1), std::nullopt);
  EXPECT_EQ(CheckedSub(0, kMin), std::nullopt);
  // 2 · (2^63 − 1): the probe's padding.
  EXPECT_EQ(CheckedMul(2, kMax), std::nullopt);
  EXPECT_EQ(CheckedMul(int64_t{1} << 32, int64_t{1} << 31), std::nullopt);
  EXPECT_EQ(CheckedMul(-1, kMin), std::nullopt);
}

TEST(CheckedMath, Product) {
  EXPECT_EQ(CheckedProduct({}), 1);
  EXPECT_EQ(CheckedProduct({3, int64_t{1} << 61}), int64_t{3} << 61);
  EXPECT_EQ(CheckedProduct({4, int64_t{1} << 61}), std::nullopt);
  // The exact product, also when a zero comes after an overflow.
  EXPECT_EQ(CheckedProduct({int64_t{1} << 62, 4, 0}), 0);
}

TEST(CheckedMath, MulSatSaturates) {
  EXPECT_EQ(MulSat(int64_t{1} << 40, int64_t{1} << 22), int64_t{1} << 62);
  EXPECT_EQ(MulSat(int64_t{1} << 40, int64_t{1} << 23), kMax);
  EXPECT_EQ(MulSat(kMax, 0), 0);
  EXPECT_EQ(MulSat(2, kMax), kMax);
}

TEST(ElementCount, ExactOrSaturated) {
  EXPECT_EQ(ElementCount({}), 1);
  EXPECT_EQ(ElementCount({2, 3, 4}), 24);
  EXPECT_EQ(ElementCount({0, 3, int64_t{1} << 62}), 0);
  EXPECT_EQ(ElementCount({3, int64_t{1} << 62}), kMax);
}

constexpr int64_t kLimit = int64_t{1} << 28;

TEST(CheckedElementCount, CountsWithinTheLimit) {
  EXPECT_EQ(CheckedElementCount({}, kLimit, "x").value(), 1);
  EXPECT_EQ(CheckedElementCount({2, 3}, kLimit, "x").value(), 6);
  EXPECT_EQ(CheckedElementCount({kLimit}, kLimit, "x").value(), kLimit);
  EXPECT_EQ(CheckedElementCount({0, 5}, kLimit, "x").value(), 0);
  EXPECT_EQ(CheckedElementCount({4, 0, kLimit / 4}, kLimit, "x").value(), 0);
}

TEST(CheckedElementCount, RejectsANegativeDimAnywhere) {
  // Also after a zero dim (the probe's [0, -5] was accepted).
  for (const Shape& shape :
       {Shape{-1}, Shape{2, -3}, Shape{0, -5}, Shape{0, 3, -1}, Shape{-1, 0}}) {
    ExpectStatus(CheckedElementCount(shape, kLimit, "value 'x'").status(),
                 absl::StatusCode::kInvalidArgument,
                 {"value 'x'", ">= 0", ShapeToString(shape)});
  }
}

TEST(CheckedElementCount, RejectsTooManyElements) {
  ExpectStatus(CheckedElementCount({kLimit, 2}, kLimit, "value 'x'").status(),
               absl::StatusCode::kResourceExhausted,
               {"value 'x'", "[268435456, 2]", "limit of 268435456"});
  ExpectStatus(CheckedElementCount(
                   {int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40},
                   kLimit, "value 'x'")
                   .status(),
               absl::StatusCode::kResourceExhausted, {"value 'x'"});
}

TEST(CheckedElementCount, BoundsTheOtherDimsOfAnEmptyTensor) {
  // The probe's Flatten of [0, 3, 2^62] gave [0, -2^62]; Concat of
  // [0, 2^62] with itself [0, -2^63].
  for (const Shape& shape :
       {Shape{0, 3, int64_t{1} << 62}, Shape{0, int64_t{1} << 62},
        Shape{kLimit + 1, 0}, Shape{0, kMax, kMax}}) {
    ExpectStatus(CheckedElementCount(shape, kLimit, "value 'x'").status(),
                 absl::StatusCode::kResourceExhausted,
                 {"value 'x'", ShapeToString(shape), "non-zero dims",
                  "limit of 268435456"});
  }
}

TEST(CheckedElementCount, CapsAConfiguredLimitAtkMaxTensorElements) {
  EXPECT_EQ(CheckedElementCount({kMaxTensorElements}, kMax, "x").value(),
            kMaxTensorElements);
  ExpectStatus(CheckedElementCount({kMaxTensorElements, 2}, kMax, "x").status(),
               absl::StatusCode::kResourceExhausted,
               {absl::StrCat("limit of ", kMaxTensorElements)});
  // So that byte sizes never overflow, whatever the limit.
  TensorMeta meta{DType::kFloat64, {kMaxTensorElements}};
  EXPECT_EQ(meta.num_bytes(), 8 * kMaxTensorElements);
}

}  // namespace
}  // namespace gradserve::testing
