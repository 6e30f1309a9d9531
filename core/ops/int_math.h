// int64 arithmetic as PyTorch's CPU kernels compute it: two's-complement
// wrap-around on overflow (never undefined behaviour), and the integer
// division of torch.div(rounding_mode="trunc" / "floor").
#ifndef GRADSERVE_CORE_OPS_INT_MATH_H_
#define GRADSERVE_CORE_OPS_INT_MATH_H_

#include <cstdint>
#include <type_traits>

namespace gradserve {

inline int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) +
                              static_cast<uint64_t>(b));
}
inline int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) -
                              static_cast<uint64_t>(b));
}
inline int64_t WrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) *
                              static_cast<uint64_t>(b));
}
inline int64_t WrapNeg(int64_t a) { return WrapSub(0, a); }
// |INT64_MIN| wraps to INT64_MIN, as torch.abs.
inline int64_t WrapAbs(int64_t a) { return a < 0 ? WrapNeg(a) : a; }

// a / b rounded toward zero; b != 0 (the caller refuses 0). INT64_MIN / -1
// wraps to INT64_MIN instead of trapping.
inline int64_t TruncDiv(int64_t a, int64_t b) {
  return b == -1 ? WrapNeg(a) : a / b;
}

// a / b rounded down (c10's div_floor_integer); b != 0.
inline int64_t FloorDiv(int64_t a, int64_t b) {
  if (b == -1) return WrapNeg(a);
  const int64_t quot = a / b;
  const int64_t rem = a % b;
  return rem != 0 && ((rem < 0) != (b < 0)) ? quot - 1 : quot;
}

// acc + a·b: wrapping for int64, plain arithmetic for floats.
template <typename T>
inline T MulAdd(T acc, T a, T b) {
  if constexpr (std::is_same_v<T, int64_t>) {
    return WrapAdd(acc, WrapMul(a, b));
  } else {
    return acc + a * b;
  }
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_INT_MATH_H_
