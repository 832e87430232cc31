// sym3d EG3D kernels: Python binding of bias_act (see bias_act.h for what each mode computes).
//
// CUDA tensors go to the kernel in bias_act.cu. CPU tensors run the same per-element code in a
// host loop; sym3d never routes CPU tensors here in normal use (the PyTorch reference is used
// on CPU), the loop exists so the math can be verified without a GPU. Building with
// -DSYM3D_HOST_ONLY leaves out the CUDA part entirely.
#include <torch/extension.h>

#include "bias_act.h"

namespace sym3d {
namespace bias_act {

#ifndef SYM3D_HOST_ONLY
void launch_cuda(const Params& p, const torch::Tensor& a, const torch::Tensor& ref,
                 const torch::Tensor& b, torch::Tensor& out);
#endif

namespace {

template <typename scalar_t>
void run_host(const Params& p, const torch::Tensor& a, const torch::Tensor& ref,
              const torch::Tensor& b, torch::Tensor& out) {
  const scalar_t* a_ptr = a.data_ptr<scalar_t>();
  const scalar_t* ref_ptr = ref.numel() > 0 ? ref.data_ptr<scalar_t>() : nullptr;
  const scalar_t* b_ptr = b.numel() > 0 ? b.data_ptr<scalar_t>() : nullptr;
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  for (int64_t i = 0; i < p.numel; ++i) apply_at<scalar_t>(p, a_ptr, ref_ptr, b_ptr, out_ptr, i);
}

}  // namespace

// a: the input (x for kForward, an incoming gradient otherwise); ref: x or y for the derivative
// modes, or an empty tensor; b: the bias or an empty tensor; clamp < 0 disables clamping.
torch::Tensor bias_act(torch::Tensor a, torch::Tensor ref, torch::Tensor b, int64_t mode,
                       int64_t act, double alpha, double gain, double clamp, int64_t dim) {
  TORCH_CHECK(a.is_floating_point(), "bias_act: a must be a floating tensor");
  TORCH_CHECK(a.is_contiguous(), "bias_act: a must be contiguous");
  TORCH_CHECK(mode >= kForward && mode <= kCurveFromY, "bias_act: unknown mode ", mode);
  TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: unknown activation code ", act);
  const bool uses_ref = mode != kForward;
  TORCH_CHECK(!uses_ref || ref.numel() == a.numel(), "bias_act: ref must have the shape of a");
  if (ref.numel() > 0) {
    TORCH_CHECK(ref.sizes() == a.sizes(), "bias_act: ref must have the shape of a");
    TORCH_CHECK(ref.is_contiguous(), "bias_act: ref must be contiguous");
    TORCH_CHECK(ref.scalar_type() == a.scalar_type(), "bias_act: ref must have the dtype of a");
    TORCH_CHECK(ref.device() == a.device(), "bias_act: ref must be on the device of a");
  }
  Params p{};
  p.act = static_cast<int>(act);
  p.mode = static_cast<int>(mode);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  p.numel = a.numel();
  p.bias_len = 0;
  p.bias_stride = 1;
  if (b.numel() > 0) {
    TORCH_CHECK(dim >= 0 && dim < a.dim(), "bias_act: dim out of range");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == a.size(dim), "bias_act: b must be [a.shape[dim]]");
    TORCH_CHECK(b.is_contiguous(), "bias_act: b must be contiguous");
    TORCH_CHECK(b.scalar_type() == a.scalar_type(), "bias_act: b must have the dtype of a");
    TORCH_CHECK(b.device() == a.device(), "bias_act: b must be on the device of a");
    p.bias_len = b.size(0);
    for (int64_t d = dim + 1; d < a.dim(); ++d) p.bias_stride *= a.size(d);
  }

  torch::Tensor out = torch::empty_like(a, at::MemoryFormat::Contiguous);
  if (p.numel == 0) return out;
  if (a.is_cuda()) {
#ifdef SYM3D_HOST_ONLY
    TORCH_CHECK(false, "bias_act: this is the host-only build; it has no CUDA kernel");
#else
    launch_cuda(p, a, ref, b, out);
#endif
  } else {
    TORCH_CHECK(a.device().is_cpu(), "bias_act: unsupported device ", a.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16,
                                    a.scalar_type(), "sym3d_bias_act_host",
                                    [&] { run_host<scalar_t>(p, a, ref, b, out); });
  }
  return out;
}

}  // namespace bias_act
}  // namespace sym3d

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sym3d EG3D kernel: fused bias + activation + gain + clamp and its derivatives";
  m.def("bias_act", &sym3d::bias_act::bias_act, "bias_act(a, ref, b, mode, act, alpha, gain, clamp, dim)");
#ifdef SYM3D_HOST_ONLY
  m.attr("HAS_CUDA") = false;
#else
  m.attr("HAS_CUDA") = true;
#endif
}
