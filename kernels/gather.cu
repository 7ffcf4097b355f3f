// Row gather / scatter-add for row-selective gradients. One thread per destination element of
// the gather and per source element of the scatter; the row index is read once per element
// (it is cached in L1, the index arrays are a few KB at most).
#include "kernels/gather.h"

#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

__global__ void gather_channels_kernel(int64_t n, const float* __restrict__ src, int64_t src_count, int64_t inner,
                                     const int64_t* __restrict__ index, int64_t count, float* __restrict__ dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t p = i % inner;
    const int64_t r = (i / inner) % count;
    const int64_t o = i / (inner * count);
    dst[i] = src[(o * src_count + index[r]) * inner + p];
  }
}

// One thread per source element; distinct indices, so every destination is written once.
__global__ void scatter_channels_kernel(int64_t n, const float* __restrict__ src, int64_t count, int64_t inner,
                                        const int64_t* __restrict__ index, int64_t dst_count, float* __restrict__ dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t p = i % inner;
    const int64_t r = (i / inner) % count;
    const int64_t o = i / (inner * count);
    dst[(o * dst_count + index[r]) * inner + p] = src[i];
  }
}

__global__ void scatter_add_rows_kernel(int64_t n, const float* __restrict__ src, int64_t row_length,
                                        const int64_t* __restrict__ index, float* __restrict__ dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t r = i / row_length, k = i - r * row_length;
    dst[index[r] * row_length + k] += src[i];
  }
}

}  // namespace

void gather_channels(const float* src, int64_t outer, int64_t src_count, int64_t inner, const int64_t* index,
                   int64_t count, float* dst, cudaStream_t stream) {
  launch_1d(outer * count * inner, stream, gather_channels_kernel, src, src_count, inner, index, count, dst);
}

void scatter_channels(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* index,
                      int64_t dst_count, float* dst, cudaStream_t stream) {
  launch_1d(outer * count * inner, stream, scatter_channels_kernel, src, count, inner, index, dst_count, dst);
}

void scatter_add_rows(const float* src, int64_t count, int64_t row_length, const int64_t* index, float* dst,
                      cudaStream_t stream) {
  launch_1d(count * row_length, stream, scatter_add_rows_kernel, src, row_length, index, dst);
}

}  // namespace nnr::kernels
