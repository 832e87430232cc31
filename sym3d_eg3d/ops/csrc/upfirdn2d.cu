// sym3d EG3D kernels: CUDA launch of upfirdn2d (per-pixel math in upfirdn2d.h).
// Only light headers: ATen/cuda/CUDAContext.h would also pull in the cuBLAS/cuSPARSE headers,
// which minimal CUDA toolkits do not ship and these kernels do not use.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "upfirdn2d.h"

namespace sym3d {
namespace upfirdn2d {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Grid-stride loop over output pixels; consecutive threads write consecutive x positions, so
// reads of the input rows and writes of the output are coalesced.
template <typename scalar_t>
__global__ void upfirdn2d_kernel(Params p, int64_t total, const scalar_t* __restrict__ x,
                                 const float* __restrict__ f, scalar_t* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    apply_at<scalar_t>(p, x, f, out, i);
  }
}

}  // namespace

void launch_cuda(const Params& p, const at::Tensor& x, const at::Tensor& f, at::Tensor& out) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const int64_t total = out.numel();
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(),
                                  "sym3d_upfirdn2d_cuda", [&] {
    upfirdn2d_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        p, total, x.data_ptr<scalar_t>(), f.data_ptr<float>(), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace upfirdn2d
}  // namespace sym3d
