// The backward pass of ops whose every output element copies one input
// element (Pad, Gather, IndexSelect, Max/Min with indices).
#ifndef GRADSERVE_CORE_OPS_SOURCE_GRAD_H_
#define GRADSERVE_CORE_OPS_SOURCE_GRAD_H_

#include <cstdint>

#include "core/ops/op_util.h"
#include "core/tensor.h"

namespace gradserve {

// dL/dx when output element o copies input element i (none when i < 0):
// each dY added into the element it came from. walk(f) calls f(o, i) for
// every output element.
template <typename Walk>
Tensor AddIntoSources(const Tensor& dy, const Shape& x_shape, Walk&& walk) {
  Tensor dx = Tensor::Zeros(dy.dtype(), x_shape);
  DispatchFloat(dx.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    walk([&](int64_t o, int64_t i) {
      if (i >= 0) dp[i] += gp[o];
    });
  });
  return dx;
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_SOURCE_GRAD_H_
