// sym3d EG3D kernels: helpers shared by the .cu files (compiled by nvcc) and the .cpp files
// (compiled by the host C++ compiler).
//
// The per-element math of every op lives in its header as SYM3D_HD functions, so the same code
// runs in the CUDA kernels and in the plain host loops of the .cpp files. The host loops exist so
// that the math can be compiled and checked against the PyTorch reference on a machine without a
// GPU (the "host" build variant, see sym3d_eg3d/ops/_build.py).
#pragma once

#include <math.h>
#include <stdint.h>

#include <ATen/OpMathType.h>

#if defined(__CUDACC__)
#define SYM3D_HD __host__ __device__ __forceinline__
#else
#define SYM3D_HD inline
#endif

namespace sym3d {

// Accumulation type: float for half, bfloat16 and float; double for double.
template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;

// float/double overloads so that templates pick the single- or double-precision function.
SYM3D_HD float math_exp(float v) { return expf(v); }
SYM3D_HD double math_exp(double v) { return exp(v); }
SYM3D_HD float math_expm1(float v) { return expm1f(v); }
SYM3D_HD double math_expm1(double v) { return expm1(v); }
SYM3D_HD float math_log1p(float v) { return log1pf(v); }
SYM3D_HD double math_log1p(double v) { return log1p(v); }
SYM3D_HD float math_tanh(float v) { return tanhf(v); }
SYM3D_HD double math_tanh(double v) { return tanh(v); }
template <typename T>
SYM3D_HD T math_abs(T v) { return v < T(0) ? -v : v; }

// Integer division rounding towards minus / plus infinity (b > 0), for signed a.
SYM3D_HD int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
SYM3D_HD int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

}  // namespace sym3d
