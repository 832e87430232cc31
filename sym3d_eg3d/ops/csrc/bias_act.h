// sym3d EG3D kernels: bias + activation + gain + clamp, and its first and second derivatives.
//
// One elementwise routine serves the forward pass and both derivative passes. Every call reads
// an input tensor `a`, optionally a reference tensor `ref` and a bias `b` (broadcast along one
// dimension), and writes `out` of the shape of `a`:
//
//   mode kForward      out = clamp(gain * act(a + b))                     (ref unused)
//   mode kSlopeFromX   out = a * S(ref + b)   S = d out / d x, from the op's input x = ref
//   mode kSlopeFromY   out = a * S            S recovered from the op's output y = ref
//   mode kCurveFromX   out = a * dS/dx        (x = ref + b)
//   mode kCurveFromY   out = a * dS/dy        (y = ref)
//
// With v = gain * act(u) the value before clamping, S = gain * act'(u) where |v| <= clamp and 0
// elsewhere. Recovering S from y uses act(u) = y / gain, which the Python side only requests
// when gain != 0 and the activation is invertible enough for it (see _cuda.py); the clamp test
// is then |y| < clamp, because a clamped y no longer tells v.
//
// For the "from y" modes, dS/dy is the derivative of S written as a function of y. Chained with
// dy/dx = S (which autograd applies through the forward op) it gives gain * act''(u).
#pragma once

#include "common.h"

namespace sym3d {
namespace bias_act {

// Activation codes; they equal ActivationSpec.cuda_index in sym3d_eg3d/ops/reference.py.
enum Activation : int {
  kLinear = 1,
  kRelu = 2,
  kLrelu = 3,
  kTanh = 4,
  kSigmoid = 5,
  kElu = 6,
  kSelu = 7,
  kSoftplus = 8,
  kSwish = 9,
};

enum Mode : int {
  kForward = 0,
  kSlopeFromX = 1,
  kSlopeFromY = 2,
  kCurveFromX = 3,
  kCurveFromY = 4,
};

struct Params {
  int act;
  int mode;
  double alpha;
  double gain;
  double clamp;         // < 0: no clamping
  int64_t numel;
  int64_t bias_len;     // 0: no bias
  int64_t bias_stride;  // elements between two consecutive entries of the biased dimension
};

// SELU constants (torch.nn.functional.selu) and the softplus linearisation threshold
// (torch.nn.functional.softplus default).
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;

template <typename T>
SYM3D_HD T logistic(T u) {
  return T(1) / (T(1) + math_exp(-u));
}

// act(u)
template <typename T>
SYM3D_HD T activation(int act, T u, T alpha) {
  switch (act) {
    case kRelu: return u < T(0) ? T(0) : u;
    case kLrelu: return u < T(0) ? u * alpha : u;
    case kTanh: return math_tanh(u);
    case kSigmoid: return logistic(u);
    case kElu: return u > T(0) ? u : math_expm1(u);
    case kSelu: return u > T(0) ? T(kSeluScale) * u : T(kSeluScale * kSeluAlpha) * math_expm1(u);
    case kSoftplus: return u > T(kSoftplusThreshold) ? u : math_log1p(math_exp(u));
    case kSwish: return u * logistic(u);
    default: return u;  // kLinear
  }
}

// act'(u)
template <typename T>
SYM3D_HD T slope_at_x(int act, T u, T alpha) {
  switch (act) {
    case kRelu: return u > T(0) ? T(1) : T(0);
    case kLrelu: return u > T(0) ? T(1) : alpha;
    case kTanh: {
      const T t = math_tanh(u);
      return T(1) - t * t;
    }
    case kSigmoid: {
      const T s = logistic(u);
      return s * (T(1) - s);
    }
    case kElu: return u > T(0) ? T(1) : math_exp(u);
    case kSelu: return u > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * math_exp(u);
    case kSoftplus: return u > T(kSoftplusThreshold) ? T(1) : logistic(u);
    case kSwish: {
      const T s = logistic(u);
      return s * (T(1) + u * (T(1) - s));
    }
    default: return T(1);  // kLinear
  }
}

// act''(u)
template <typename T>
SYM3D_HD T curve_at_x(int act, T u, T alpha) {
  switch (act) {
    case kTanh: {
      const T t = math_tanh(u);
      return T(-2) * t * (T(1) - t * t);
    }
    case kSigmoid: {
      const T s = logistic(u);
      return s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case kElu: return u > T(0) ? T(0) : math_exp(u);
    case kSelu: return u > T(0) ? T(0) : T(kSeluScale * kSeluAlpha) * math_exp(u);
    case kSoftplus: {
      if (u > T(kSoftplusThreshold)) return T(0);
      const T s = logistic(u);
      return s * (T(1) - s);
    }
    case kSwish: {
      const T s = logistic(u);
      return s * (T(1) - s) * (T(2) + u * (T(1) - T(2) * s));
    }
    default: return T(0);  // kLinear, kRelu, kLrelu: piecewise linear
  }
}

// act'(u) written in terms of a = act(u). Not defined for swish (never requested).
template <typename T>
SYM3D_HD T slope_at_y(int act, T a, T alpha) {
  switch (act) {
    case kRelu: return a > T(0) ? T(1) : T(0);
    case kLrelu: return a > T(0) ? T(1) : alpha;
    case kTanh: return T(1) - a * a;
    case kSigmoid: return a * (T(1) - a);
    case kElu: return a > T(0) ? T(1) : a + T(1);
    case kSelu: return a > T(0) ? T(kSeluScale) : a + T(kSeluScale * kSeluAlpha);
    case kSoftplus: return a > T(kSoftplusThreshold) ? T(1) : -math_expm1(-a);
    case kLinear: return T(1);
    default: return T(NAN);
  }
}

// d act'(u) / d a, with a = act(u): equals act''(u) / act'(u).
template <typename T>
SYM3D_HD T curve_at_y(int act, T a, T alpha) {
  switch (act) {
    case kTanh: return T(-2) * a;
    case kSigmoid: return T(1) - T(2) * a;
    case kElu: return a > T(0) ? T(0) : T(1);
    case kSelu: return a > T(0) ? T(0) : T(1);
    case kSoftplus: return a > T(kSoftplusThreshold) ? T(0) : math_exp(-a);
    case kLinear:
    case kRelu:
    case kLrelu: return T(0);
    default: return T(NAN);
  }
}

// One element. T is the accumulation type; `a`, `ref` and `bias` are already converted to it.
template <typename T>
SYM3D_HD T evaluate(const Params& p, T a, T ref, T bias) {
  const T alpha = static_cast<T>(p.alpha);
  const T gain = static_cast<T>(p.gain);
  const bool clamped = p.clamp >= 0;
  const T clamp = static_cast<T>(p.clamp);
  switch (p.mode) {
    case kForward: {
      T v = gain * activation(p.act, a + bias, alpha);
      if (clamped) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);  // NaN passes through
      return v;
    }
    case kSlopeFromX:
    case kCurveFromX: {
      const T u = ref + bias;
      if (clamped) {
        const T v = gain * activation(p.act, u, alpha);
        if (!(math_abs(v) <= clamp)) return T(0);
      }
      const T d = p.mode == kSlopeFromX ? slope_at_x(p.act, u, alpha) : curve_at_x(p.act, u, alpha);
      return a * gain * d;
    }
    case kSlopeFromY:
    case kCurveFromY: {
      if (clamped && !(math_abs(ref) < clamp)) return T(0);
      const T act_value = ref / gain;
      if (p.mode == kSlopeFromY) return a * gain * slope_at_y(p.act, act_value, alpha);
      return a * curve_at_y(p.act, act_value, alpha);
    }
    default: return T(NAN);
  }
}

// Element i of one call; `ref` and `b` may be null.
template <typename scalar_t>
SYM3D_HD void apply_at(const Params& p, const scalar_t* a, const scalar_t* ref, const scalar_t* b,
                       scalar_t* out, int64_t i) {
  using T = acc_type<scalar_t>;
  const T bias = p.bias_len > 0 ? static_cast<T>(b[(i / p.bias_stride) % p.bias_len]) : T(0);
  const T r = ref != nullptr ? static_cast<T>(ref[i]) : T(0);
  out[i] = static_cast<scalar_t>(evaluate<T>(p, static_cast<T>(a[i]), r, bias));
}

}  // namespace bias_act
}  // namespace sym3d
