// What the client tests share: wire tensors built from values, and a
// temporary directory per test with Debian's Python and numpy run in it (to
// check files against what numpy reads and writes).
#ifndef GRADSERVE_TESTS_CLIENT_PROTO_TENSORS_H_
#define GRADSERVE_TESTS_CLIENT_PROTO_TENSORS_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "gradserve/v1/tensor.pb.h"
#include "gtest/gtest.h"

namespace gradserve::client {

inline gradserve::v1::Tensor Floats(std::vector<int64_t> shape,
                                    std::vector<float> v) {
  gradserve::v1::Tensor t;
  t.set_dtype(gradserve::v1::DATA_TYPE_FLOAT32);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  t.set_data(v.data(), v.size() * sizeof(float));
  return t;
}

inline gradserve::v1::Tensor Ints(std::vector<int64_t> shape,
                                  std::vector<int64_t> v) {
  gradserve::v1::Tensor t;
  t.set_dtype(gradserve::v1::DATA_TYPE_INT64);
  t.mutable_shape()->Assign(shape.begin(), shape.end());
  t.set_data(v.data(), v.size() * sizeof(int64_t));
  return t;
}

class NumpyDir : public ::testing::Test {
 protected:
  explicit NumpyDir(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (prefix_ + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs a snippet of Debian's Python with numpy as np, in dir_.
  void Python(const std::string& code) {
    const std::string command = "cd '" + dir_.string() +
                                "' && /usr/bin/python3 -c \"import numpy as "
                                "np; " +
                                code + "\"";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  std::string Path(const std::string& name) const {
    return (dir_ / name).string();
  }

  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

}  // namespace gradserve::client

#endif  // GRADSERVE_TESTS_CLIENT_PROTO_TENSORS_H_
