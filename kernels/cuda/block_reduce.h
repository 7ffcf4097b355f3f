#pragma once
// Block-wide sum of one double per thread (include from .cu files only). Every thread of the
// block must call it; the result is valid in thread 0. Fixed order: warp shuffles, then warp 0
// adds the per-warp sums in warp order, so one block's result is reproducible run to run.
#include <cuda_runtime.h>

namespace nnr::kernels {

inline __device__ double warp_sum(double value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// blockDim.x must be a multiple of 32 and at most 1024.
inline __device__ double block_sum(double value) {
  __shared__ double warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  value = warp_sum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  double total = 0.0;
  if (warp == 0) {
    total = lane < static_cast<int>(blockDim.x >> 5) ? warp_sums[lane] : 0.0;
    total = warp_sum(total);
  }
  __syncthreads();  // warp_sums may be reused by a following call
  return total;
}

}  // namespace nnr::kernels
