#include "client/npy.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/client/proto_tensors.h"
#include "tests/status_testing.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

std::vector<float> FloatData(const pb::Tensor& t) {
  std::vector<float> v(t.data().size() / sizeof(float));
  std::memcpy(v.data(), t.data().data(), t.data().size());
  return v;
}

std::vector<int64_t> IntData(const pb::Tensor& t) {
  std::vector<int64_t> v(t.data().size() / sizeof(int64_t));
  std::memcpy(v.data(), t.data().data(), t.data().size());
  return v;
}

class NumpyFiles : public NumpyDir {
 protected:
  NumpyFiles() : NumpyDir("gradserve_npy_") {}
};

TEST(Npy, RoundTripFloat32AndInt64) {
  pb::Tensor f = Floats({2, 3}, {1, -2, 3.5, 0, 5e-9f, 6});
  auto bytes = SerializeNpy(f);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size() % 64, 24u);  // 64-byte header + 24 data bytes
  auto back = ParseNpy(*bytes, "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dtype(), pb::DATA_TYPE_FLOAT32);
  EXPECT_EQ(std::vector<int64_t>(back->shape().begin(), back->shape().end()),
            (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(FloatData(*back), FloatData(f));

  pb::Tensor i;
  i.set_dtype(pb::DATA_TYPE_INT64);
  i.add_shape(3);
  for (int64_t v : std::vector<int64_t>{7, -1, int64_t{1} << 40}) {
    i.add_int64_values(v);
  }
  auto ib = ParseNpy(*SerializeNpy(i), "mem");
  ASSERT_TRUE(ib.ok()) << ib.status();
  EXPECT_EQ(IntData(*ib), (std::vector<int64_t>{7, -1, int64_t{1} << 40}));
}

TEST(Npy, ScalarAndEmpty) {
  auto scalar = ParseNpy(*SerializeNpy(Floats({}, {2.5})), "mem");
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ(scalar->shape_size(), 0);
  EXPECT_EQ(FloatData(*scalar), std::vector<float>{2.5});
  auto empty = ParseNpy(*SerializeNpy(Floats({0, 4}, {})), "mem");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->shape(1), 4);
  EXPECT_TRUE(empty->data().empty());
}

TEST(Npy, RejectsMalformedImages) {
  std::string good = *SerializeNpy(Floats({2}, {1, 2}));
  testing::ExpectStatus(ParseNpy("PK\x03\x04 zip", "a.npy").status(),
                        absl::StatusCode::kInvalidArgument,
                        {"a.npy: not a .npy"});
  testing::ExpectStatus(ParseNpy(good.substr(0, 20), "t.npy").status(),
                        absl::StatusCode::kInvalidArgument, {"truncated"});
  testing::ExpectStatus(
      ParseNpy(good.substr(0, good.size() - 1), "s.npy").status(),
      absl::StatusCode::kInvalidArgument, {"7 bytes of data, expected 8"});
  testing::ExpectStatus(ParseNpy(good + "xxxx", "l.npy").status(),
                        absl::StatusCode::kInvalidArgument, {"expected 8"});
  std::string bad_dtype = good;
  bad_dtype.replace(bad_dtype.find("<f4"), 3, "<c8");
  testing::ExpectStatus(ParseNpy(bad_dtype, "c.npy").status(),
                        absl::StatusCode::kInvalidArgument,
                        {"'<c8' is not supported"});
  testing::ExpectStatus(ReadNpy("/nonexistent/x.npy").status(),
                        absl::StatusCode::kNotFound, {"/nonexistent/x.npy"});
}

TEST_F(NumpyFiles, ReadsWhatNumpyWrites) {
  Python(
      "np.save('f4.npy', np.arange(6, dtype=np.float32).reshape(2, 3)); "
      "np.save('f8.npy', np.array([0.5, -1.25])); "
      "np.save('i8.npy', np.array([3, -4], dtype=np.int64)); "
      "np.save('i4.npy', np.array([[1], [2]], dtype=np.int32)); "
      "np.save('b1.npy', np.array([True, False, True])); "
      "np.save('u1.npy', np.array([0, 1], dtype=np.uint8)); "
      "np.save('scalar.npy', np.float32(4.0)); "
      "np.lib.format.write_array(open('v2.npy', 'wb'), "
      "np.ones((2, 2), np.float32), version=(2, 0))");
  auto f4 = ReadNpy(Path("f4.npy"));
  ASSERT_TRUE(f4.ok()) << f4.status();
  EXPECT_EQ(FloatData(*f4), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(FloatData(*ReadNpy(Path("f8.npy"))),
            (std::vector<float>{0.5, -1.25}));
  EXPECT_EQ(IntData(*ReadNpy(Path("i8.npy"))), (std::vector<int64_t>{3, -4}));
  auto i4 = ReadNpy(Path("i4.npy"));
  ASSERT_TRUE(i4.ok()) << i4.status();
  EXPECT_EQ(i4->dtype(), pb::DATA_TYPE_INT64);
  EXPECT_EQ(i4->shape(0), 2);
  EXPECT_EQ(IntData(*i4), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(FloatData(*ReadNpy(Path("b1.npy"))), (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(FloatData(*ReadNpy(Path("u1.npy"))), (std::vector<float>{0, 1}));
  auto scalar = ReadNpy(Path("scalar.npy"));
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ(scalar->shape_size(), 0);
  EXPECT_EQ(FloatData(*ReadNpy(Path("v2.npy"))), std::vector<float>(4, 1));
}

TEST_F(NumpyFiles, RefusesLayoutsItCannotRead) {
  Python(
      "np.save('fortran.npy', np.asfortranarray(np.ones((2, 3), np.float32))); "
      "np.save('big.npy', np.ones(3, dtype='>f4'))");
  testing::ExpectStatus(ReadNpy(Path("fortran.npy")).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"Fortran-ordered"});
  testing::ExpectStatus(ReadNpy(Path("big.npy")).status(),
                        absl::StatusCode::kInvalidArgument, {"big-endian"});
}

TEST_F(NumpyFiles, NumpyReadsWhatWeWrite) {
  ASSERT_TRUE(WriteNpy(Path("ours.npy"), Floats({2, 2}, {1, 2, 3, 4})).ok());
  pb::Tensor s;
  s.set_dtype(pb::DATA_TYPE_INT64);
  s.add_int64_values(9);
  ASSERT_TRUE(WriteNpy(Path("scalar.npy"), s).ok());
  Python(
      "a = np.load('ours.npy'); assert a.dtype == np.float32 and a.shape == "
      "(2, 2) and a[1, 0] == 3, a; s = np.load('scalar.npy'); assert s.shape "
      "== () and s.dtype == np.int64 and s == 9, s");
}

}  // namespace
}  // namespace gradserve::client
