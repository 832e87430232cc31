// sym3d EG3D kernels: Python binding of upfirdn2d (see upfirdn2d.h for the formulation).
//
// CUDA tensors go to the kernel in upfirdn2d.cu; CPU tensors run the same per-pixel code in a
// host loop, which exists to verify the math without a GPU. -DSYM3D_HOST_ONLY leaves out CUDA.
#include <torch/extension.h>

#include "upfirdn2d.h"

namespace sym3d {
namespace upfirdn2d {

#ifndef SYM3D_HOST_ONLY
void launch_cuda(const Params& p, const torch::Tensor& x, const torch::Tensor& f, torch::Tensor& out);
#endif

namespace {

template <typename scalar_t>
void run_host(const Params& p, const torch::Tensor& x, const torch::Tensor& f, torch::Tensor& out) {
  const scalar_t* x_ptr = x.data_ptr<scalar_t>();
  const float* f_ptr = f.data_ptr<float>();
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  const int64_t total = out.numel();
  for (int64_t i = 0; i < total; ++i) apply_at<scalar_t>(p, x_ptr, f_ptr, out_ptr, i);
}

}  // namespace

// x: [N, C, H, W] contiguous; f: float32 [fh, fw] or separable [taps], contiguous, on x's device.
// Padding is with respect to the upsampled image; negative padding crops.
torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y,
                        int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1,
                        int64_t pad_y0, int64_t pad_y1, bool flip, double gain) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W]");
  TORCH_CHECK(x.is_floating_point(), "upfirdn2d: x must be a floating tensor");
  TORCH_CHECK(x.is_contiguous(), "upfirdn2d: x must be contiguous");
  TORCH_CHECK(f.scalar_type() == at::ScalarType::Float, "upfirdn2d: f must be float32");
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "upfirdn2d: f must be [fh, fw] or [taps]");
  TORCH_CHECK(f.is_contiguous(), "upfirdn2d: f must be contiguous");
  TORCH_CHECK(f.device() == x.device(), "upfirdn2d: f must be on the device of x");
  TORCH_CHECK(f.numel() > 0, "upfirdn2d: f must not be empty");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "upfirdn2d: up and down factors must be >= 1");

  Params p{};
  p.planes = x.size(0) * x.size(1);
  p.in_h = x.size(2);
  p.in_w = x.size(3);
  p.up_x = up_x;
  p.up_y = up_y;
  p.down_x = down_x;
  p.down_y = down_y;
  p.pad_x0 = pad_x0;
  p.pad_y0 = pad_y0;
  p.separable = f.dim() == 1;
  p.f_h = f.size(0);
  p.f_w = p.separable ? f.size(0) : f.size(1);
  p.flip = flip;
  p.gain = static_cast<float>(gain);
  const int64_t padded_h = p.in_h * up_y + pad_y0 + pad_y1;
  const int64_t padded_w = p.in_w * up_x + pad_x0 + pad_x1;
  TORCH_CHECK(padded_h >= p.f_h && padded_w >= p.f_w,
              "upfirdn2d: the padded image is smaller than the filter");
  p.out_h = (padded_h - p.f_h) / down_y + 1;
  p.out_w = (padded_w - p.f_w) / down_x + 1;

  torch::Tensor out = torch::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  if (out.numel() == 0) return out;
  if (x.is_cuda()) {
#ifdef SYM3D_HOST_ONLY
    TORCH_CHECK(false, "upfirdn2d: this is the host-only build; it has no CUDA kernel");
#else
    launch_cuda(p, x, f, out);
#endif
  } else {
    TORCH_CHECK(x.device().is_cpu(), "upfirdn2d: unsupported device ", x.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16,
                                    x.scalar_type(), "sym3d_upfirdn2d_host",
                                    [&] { run_host<scalar_t>(p, x, f, out); });
  }
  return out;
}

}  // namespace upfirdn2d
}  // namespace sym3d

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sym3d EG3D kernel: upsample, pad, FIR filter and downsample [N, C, H, W] images";
  m.def("upfirdn2d", &sym3d::upfirdn2d::upfirdn2d,
        "upfirdn2d(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip, gain)");
#ifdef SYM3D_HOST_ONLY
  m.attr("HAS_CUDA") = false;
#else
  m.attr("HAS_CUDA") = true;
#endif
}
