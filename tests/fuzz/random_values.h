// The values the mutator draws: mostly small ones that pass validation and
// reach the ops, some at the boundaries (0, -1, the limits' edges) and some
// extreme (INT64_MIN, 2^32, NaN, infinities, denormals).
#ifndef GRADSERVE_TESTS_FUZZ_RANDOM_VALUES_H_
#define GRADSERVE_TESTS_FUZZ_RANDOM_VALUES_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace gradserve::fuzz {

class Random {
 public:
  explicit Random(std::mt19937& gen) : gen_(gen) {}

  // Uniform in [0, n); 0 when n <= 0.
  int Below(int n) {
    return n <= 0 ? 0 : std::uniform_int_distribution<int>(0, n - 1)(gen_);
  }
  // Uniform in [lo, hi].
  int64_t Between(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(gen_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(static_cast<int>(v.size()))];
  }

  // An attribute or field integer.
  int64_t Int();
  // A tensor dimension: mostly 0..6, sometimes negative or huge.
  int64_t Dim();
  // A float value: mostly in [-2, 2], sometimes NaN, infinite, tiny, huge.
  double Float();
  // A float in [-1, 1].
  double Uniform() {
    return std::uniform_real_distribution<double>(-1, 1)(gen_);
  }
  // An int64 tensor value: class labels in [-1, 5], sometimes extreme.
  int64_t Label();
  // A short string that names nothing.
  std::string Garbage();

  std::mt19937& gen() { return gen_; }

 private:
  std::mt19937& gen_;
};

}  // namespace gradserve::fuzz

#endif  // GRADSERVE_TESTS_FUZZ_RANDOM_VALUES_H_
