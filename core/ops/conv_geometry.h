// The geometry of a Conv1d/Conv2d seen as 2-d (a 1-d convolution has
// height 1), and the walk over its multiplies that the reference loops of
// Conv and ConvTranspose share: a transposed convolution is the input
// gradient of the convolution whose input is its output.
#ifndef GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_
#define GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_

#include <cstdint>
#include <vector>

#include "core/ops/int_math.h"
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

  // The three products of the convolution, each adding into its output:
  // y += x ⊛ w, dx += dy ⊛ᵀ w (the full convolution), dw += dy ⋆ x.
  template <typename T>
  void Convolve(const T* x, const T* w, T* y) const {
    ForEachTap([&](int64_t xi, int64_t wi, int64_t yi) {
      y[yi] = MulAdd(y[yi], x[xi], w[wi]);
    });
  }
  template <typename T>
  void InputGradient(const T* dy, const T* w, T* dx) const {
    ForEachTap([&](int64_t xi, int64_t wi, int64_t yi) {
      dx[xi] = MulAdd(dx[xi], dy[yi], w[wi]);
    });
  }
  template <typename T>
  void WeightGradient(const T* dy, const T* x, T* dw) const {
    ForEachTap(
        [&](int64_t xi, int64_t wi, int64_t yi) { dw[wi] += dy[yi] * x[xi]; });
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

// For a tensor [N, C, ...] of `count` elements: y[i] = b[channel of i]
// (0 without b), and db[c] += Σ g over channel c.
template <typename T>
void FillPerChannel(const T* b, int64_t n, int64_t c, int64_t count, T* y) {
  const int64_t plane = n * c == 0 ? 1 : count / (n * c);
  for (int64_t i = 0; i < count; ++i) y[i] = b ? b[(i / plane) % c] : T(0);
}
template <typename T>
void SumPerChannel(const T* g, int64_t n, int64_t c, int64_t count, T* db) {
  const int64_t plane = n * c == 0 ? 1 : count / (n * c);
  for (int64_t i = 0; i < count; ++i) db[(i / plane) % c] += g[i];
}

}  // namespace gradserve

#endif  // GRADSERVE_CORE_OPS_CONV_GEOMETRY_H_
