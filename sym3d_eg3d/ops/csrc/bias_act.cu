// sym3d EG3D kernels: CUDA launch of bias_act (per-element math in bias_act.h).
// Only light headers: ATen/cuda/CUDAContext.h would also pull in the cuBLAS/cuSPARSE headers,
// which minimal CUDA toolkits do not ship and these kernels do not use.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "bias_act.h"

namespace sym3d {
namespace bias_act {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Grid-stride loop: one thread per element, as many passes as the grid needs.
template <typename scalar_t>
__global__ void bias_act_kernel(Params p, const scalar_t* __restrict__ a,
                                const scalar_t* __restrict__ ref, const scalar_t* __restrict__ b,
                                scalar_t* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    apply_at<scalar_t>(p, a, ref, b, out, i);
  }
}

}  // namespace

void launch_cuda(const Params& p, const at::Tensor& a, const at::Tensor& ref,
                 const at::Tensor& b, at::Tensor& out) {
  const c10::cuda::OptionalCUDAGuard guard(a.device());
  const int64_t blocks = std::min<int64_t>((p.numel + kThreads - 1) / kThreads, kMaxBlocks);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, a.scalar_type(),
                                  "sym3d_bias_act_cuda", [&] {
    bias_act_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        p, a.data_ptr<scalar_t>(), ref.numel() > 0 ? ref.data_ptr<scalar_t>() : nullptr,
        b.numel() > 0 ? b.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace bias_act
}  // namespace sym3d
