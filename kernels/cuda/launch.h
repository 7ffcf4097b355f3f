#pragma once
// The one way 1-D kernels are launched (include from .cu files only). The kernel's first
// parameter is the element count n; it must loop `for (i = first_index(); i < n; i += grid_stride())`
// so that any grid covers any n. The grid is derived from n, capped so the index math never
// overflows and huge n reuse threads instead of launching millions of blocks.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace nnr::kernels {

constexpr int kBlockSize = 256;
constexpr int64_t kMaxGridBlocks = int64_t{1} << 20;

inline __device__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
inline __device__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

inline unsigned grid_for(int64_t n, int block = kBlockSize) {
  return static_cast<unsigned>(std::min<int64_t>((n + block - 1) / block, kMaxGridBlocks));
}

// kernel<<<grid_for(n), kBlockSize, 0, stream>>>(n, args...); nothing is launched when n <= 0.
template <typename... KernelArgs, typename... Args>
void launch_1d(int64_t n, cudaStream_t stream, void (*kernel)(int64_t, KernelArgs...), Args&&... args) {
  if (n <= 0) return;
  kernel<<<grid_for(n), kBlockSize, 0, stream>>>(n, static_cast<KernelArgs>(args)...);
  NNR_CUDA_CHECK_LAUNCH();
}

}  // namespace nnr::kernels
