// .npz archives through libzip, against NumPy's own np.savez and np.load.
#include "client/npz.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "client/npy.h"
#include "gtest/gtest.h"
#include "tests/client/proto_tensors.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

class Npz : public NumpyDir {
 protected:
  Npz() : NumpyDir("gradserve_npz_") {}
};

TEST_F(Npz, ReadsWhatNumpyWritesStoredAndDeflated) {
  for (const std::string save : {"savez", "savez_compressed"}) {
    Python("np." + save +
           "('d.npz', x=np.arange(6, dtype=np.float32).reshape(2, 3), "
           "labels=np.array([3, 1], dtype=np.int64), "
           "**{'grad/W': np.ones((2,), np.float64)})");
    auto arrays = ReadNpz(Path("d.npz"));
    ASSERT_TRUE(arrays.ok()) << arrays.status();
    ASSERT_EQ(arrays->size(), 3u) << save;
    const pb::Tensor& x = arrays->at("x");
    EXPECT_EQ(x.shape_size(), 2);
    std::vector<float> v(6);
    std::memcpy(v.data(), x.data().data(), 24);
    EXPECT_EQ(v, (std::vector<float>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(arrays->at("labels").dtype(), pb::DATA_TYPE_INT64);
    EXPECT_EQ(arrays->at("grad/W").dtype(), pb::DATA_TYPE_FLOAT32);
  }
}

TEST_F(Npz, NumpyReadsWhatWeWrite) {
  for (bool compress : {false, true}) {
    Arrays arrays;
    arrays["w"] = Floats({2, 2}, {1.5f, -2, 3, 4});
    arrays["outputs/loss"] = Floats({}, {0.25f});
    arrays["n"] = Ints({3}, {7, 8, 9});
    ASSERT_TRUE(WriteNpz(Path("o.npz"), arrays, compress).ok());
    Python(
        "z = np.load('o.npz'); assert sorted(z.files) == ['n', 'outputs/loss', "
        "'w'], z.files; assert (z['w'] == [[1.5, -2], [3, 4]]).all(); assert "
        "z['outputs/loss'].shape == () and z['outputs/loss'] == 0.25; assert "
        "z['n'].dtype == np.int64 and list(z['n']) == [7, 8, 9]");
    auto back = ReadNpz(Path("o.npz"));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->at("w").data(), arrays["w"].data());
  }
}

TEST_F(Npz, EmptyArchiveRoundTrips) {
  ASSERT_TRUE(WriteNpz(Path("e.npz"), {}).ok());
  Python("assert np.load('e.npz').files == []");
  auto back = ReadNpz(Path("e.npz"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->empty());
}

TEST_F(Npz, WritesAtomicallyLeavingNoTemporaryFiles) {
  Arrays arrays;
  arrays["a"] = Floats({1}, {1});
  ASSERT_TRUE(WriteNpz(Path("a.npz"), arrays).ok());
  arrays["a"] = Floats({1}, {2});
  ASSERT_TRUE(WriteNpz(Path("a.npz"), arrays).ok());
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "a.npz");
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(ReadNpz(Path("a.npz"))->at("a").data(), arrays["a"].data());
}

TEST_F(Npz, ErrorsNameTheFileAndMember) {
  ASSERT_TRUE(WriteFile(Path("junk.npz"), "not a zip at all").ok());
  auto junk = ReadNpz(Path("junk.npz"));
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("junk.npz: not a readable .npz"),
            std::string::npos)
      << junk.status();
  Python(
      "import zipfile; f = zipfile.ZipFile('odd.npz', 'w'); "
      "f.writestr('notes.txt', 'hi'); f.close()");
  auto odd = ReadNpz(Path("odd.npz"));
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().message().find("member 'notes.txt'"),
            std::string::npos)
      << odd.status();
  Python("np.savez('c.npz', z=np.zeros(2, np.complex64))");
  auto complex = ReadNpz(Path("c.npz"));
  ASSERT_FALSE(complex.ok());
  EXPECT_NE(complex.status().message().find("c.npz: z"), std::string::npos)
      << complex.status();
  EXPECT_FALSE(ReadNpz(Path("missing.npz")).ok());
}

}  // namespace
}  // namespace gradserve::client
