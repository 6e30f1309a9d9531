// The geometry of a Conv1d/Conv2d seen as 2-d (a 1-d convolution has
// height 1), and the walk over its multiplies that the reference loops of
// Conv and ConvTranspose share: a transposed convolution is the input
// gradient of the convolution whose input is its output.
#ifndef GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_
#define GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace gradserve {

struct ConvGeometry {
  // x [n, c, h, w] convolved with weights [f, cg, kh, kw] into y [n, f, oh,
  // ow]; stride, padding (before), dilation; cg = c/groups, fg = f/groups.
  int64_t n, c, h, w, f, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, cg, fg;

  // For x, weights and y shapes of rank spatial + 2 and per-dim attributes.
  static ConvGeometry Of(int spatial, const Shape& x, const Shape& weights,
                         const Shape& y, const std::vector<int64_t>& stride,
                         const std::vector<int64_t>& padding,
                         const std::vector<int64_t>& dilation, int64_t groups) {
    const bool two = spatial == 2;
    return {x[0],
            x[1],
            two ? x[2] : 1,
            x.back(),
            weights[0],
            two ? weights[2] : 1,
            weights.back(),
            two ? y[2] : 1,
            y.back(),
            two ? stride[0] : 1,
            stride.back(),
            two ? padding[0] : 0,
            padding.back(),
            two ? dilation[0] : 1,
            dilation.back(),
            x[1] / groups,
            weights[0] / groups};
  }

  // Calls f(x index, weight index, y index) for every multiply of the
  // convolution, skipping taps that fall into the padding.
  template <typename F>
  void ForEachTap(F&& f) const {
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < this->f; ++o) {
        const int64_t group = o / fg;
        for (int64_t oy = 0; oy < oh; ++oy) {
          for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t yi = ((b * this->f + o) * oh + oy) * ow + ox;
            for (int64_t ch = 0; ch < cg; ++ch) {
              const int64_t ci = group * cg + ch;
              for (int64_t ky = 0; ky < kh; ++ky) {
                const int64_t iy = oy * sh - ph + ky * dh;
                if (iy < 0 || iy >= h) continue;
                for (int64_t kx = 0; kx < kw; ++kx) {
                  const int64_t ix = ox * sw - pw + kx * this->dw;
                  if (ix < 0 || ix >= w) continue;
                  f(((b * c + ci) * h + iy) * w + ix,
                    ((o * cg + ch) * kh + ky) * kw + kx, yi);
                }
              }
            }
          }
        }
      }
    }
  }
};

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_
