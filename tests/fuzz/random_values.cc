#include "tests/fuzz/random_values.h"

#include <limits>

namespace gradserve::fuzz {
namespace {

using Int64Limits = std::numeric_limits<int64_t>;

const std::vector<int64_t>& ExtremeInts() {
  static const std::vector<int64_t> values = {Int64Limits::min(),
                                              Int64Limits::min() + 1,
                                              Int64Limits::max(),
                                              Int64Limits::max() - 1,
                                              int64_t{1} << 62,
                                              int64_t{1} << 32,
                                              (int64_t{1} << 31) - 1,
                                              int64_t{1} << 31,
                                              -(int64_t{1} << 31),
                                              int64_t{1} << 16,
                                              4095,
                                              4096,
                                              4097,
                                              65,
                                              64,
                                              63,
                                              -2,
                                              -1000};
  return values;
}

}  // namespace

int64_t Random::Int() {
  const int kind = Below(10);
  if (kind < 6) return Between(-2, 5);
  if (kind < 8) return Between(0, 16);
  return Pick(ExtremeInts());
}

int64_t Random::Dim() {
  const int kind = Below(20);
  if (kind < 14) return Between(0, 6);
  if (kind < 17) return Between(7, 70);
  if (kind < 18) return -1;
  return Pick(ExtremeInts());
}

double Random::Float() {
  static const std::vector<double> special = {
      0.0,
      -0.0,
      1.0,
      -1.0,
      0.5,
      1e-7,
      1e-30,
      1e-45,
      -1e-45,
      3.4e38,
      -3.4e38,
      1e300,
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      std::numeric_limits<double>::quiet_NaN(),
      std::numeric_limits<double>::denorm_min(),
      std::numeric_limits<double>::max()};
  if (Chance(0.75)) return 2 * Uniform();
  return Pick(special);
}

int64_t Random::Label() {
  if (Chance(0.9)) return Between(-1, 5);
  return Pick(ExtremeInts());
}

std::string Random::Garbage() {
  // Valid UTF-8 only: proto3 refuses other strings at parsing, before any
  // of gradserve's code runs.
  static const std::vector<std::string> words = {
      "x", "y", "W", "nope", "a/b", "'", "\u00e9", "..", " ", "mean", "sum"};
  if (Chance(0.8)) return Pick(words);
  std::string s(Below(12), ' ');
  for (char& c : s) c = static_cast<char>(Between(0, 127));
  return s;
}

}  // namespace gradserve::fuzz
