// sym3d EG3D kernels: upsample (zero insertion), pad or crop, FIR filter, downsample.
//
// Direct formulation, one output pixel at a time. Output pixel (oy, ox) of a channel is
//
//   gain * sum_{i, j} U[oy*down_y + i - pad_y0, ox*down_x + j - pad_x0] * k[i, j]
//
// where U is the zero-inserted input (U[r, c] = x[r / up_y, c / up_x] when both divide, zero
// otherwise and outside the image) and k is the filter as a correlation kernel: f itself when
// `flip` is set, f rotated by 180 degrees otherwise. A separable filter [taps] stands for the
// outer product of the taps with themselves. Instead of visiting every tap, the loops below visit
// only the input pixels that land inside the filter window, so zero insertion costs nothing.
#pragma once

#include "common.h"

namespace sym3d {
namespace upfirdn2d {

struct Params {
  int64_t planes;  // N * C
  int64_t in_h, in_w, out_h, out_w;
  int64_t up_x, up_y, down_x, down_y;
  int64_t pad_x0, pad_y0;
  int64_t f_h, f_w;  // filter size; for a separable filter both equal the number of taps
  bool separable;
  bool flip;
  float gain;
};

// Output element `index` (row-major over [planes, out_h, out_w]).
template <typename scalar_t>
SYM3D_HD void apply_at(const Params& p, const scalar_t* x, const float* f, scalar_t* out,
                       int64_t index) {
  using T = acc_type<scalar_t>;
  const int64_t ox = index % p.out_w;
  const int64_t oy = (index / p.out_w) % p.out_h;
  const int64_t plane = index / (p.out_w * p.out_h);
  const scalar_t* src = x + plane * p.in_h * p.in_w;

  // The window covers rows [base_y, base_y + f_h) of the upsampled image; the input rows that
  // land there are those iy with base_y <= iy * up_y < base_y + f_h and 0 <= iy < in_h.
  const int64_t base_y = oy * p.down_y - p.pad_y0;
  const int64_t base_x = ox * p.down_x - p.pad_x0;
  int64_t iy0 = ceil_div(base_y, p.up_y);
  int64_t iy1 = floor_div(base_y + p.f_h - 1, p.up_y);
  int64_t ix0 = ceil_div(base_x, p.up_x);
  int64_t ix1 = floor_div(base_x + p.f_w - 1, p.up_x);
  iy0 = iy0 < 0 ? 0 : iy0;
  ix0 = ix0 < 0 ? 0 : ix0;
  iy1 = iy1 > p.in_h - 1 ? p.in_h - 1 : iy1;
  ix1 = ix1 > p.in_w - 1 ? p.in_w - 1 : ix1;

  T acc = T(0);
  for (int64_t iy = iy0; iy <= iy1; ++iy) {
    const int64_t i = iy * p.up_y - base_y;             // window row, 0 <= i < f_h
    const int64_t fi = p.flip ? i : p.f_h - 1 - i;       // filter row
    const scalar_t* row = src + iy * p.in_w;
    for (int64_t ix = ix0; ix <= ix1; ++ix) {
      const int64_t j = ix * p.up_x - base_x;
      const int64_t fj = p.flip ? j : p.f_w - 1 - j;
      const T w = p.separable ? static_cast<T>(f[fi]) * static_cast<T>(f[fj]) : static_cast<T>(f[fi * p.f_w + fj]);
      acc += static_cast<T>(row[ix]) * w;
    }
  }
  out[index] = static_cast<scalar_t>(acc * static_cast<T>(p.gain));
}

}  // namespace upfirdn2d
}  // namespace sym3d
