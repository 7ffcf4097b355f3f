#pragma once
// Gather and scatter of selected rows: the gradients of the output neurons (Linear) or filters
// (Conv2d) a bandit opened, computed on a compact copy and added back; and the input gradient of
// the channels the layers below read, computed compactly and put in place (scatter_channels).
//   *_cpu  the CPU reference (kernels/gather.cpp), host pointers.
//   others the CUDA launchers (kernels/gather.cu), device pointers, asynchronous on `stream`.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nnr::kernels {

// dst[o, r, p] = src[o, index[r], p] with src viewed as [outer, src_count, inner] and dst as
// [outer, count, inner]. Every index must lie in [0, src_count).
void gather_channels_cpu(const float* src, int64_t outer, int64_t src_count, int64_t inner, const int64_t* index,
                         int64_t count, float* dst);
// dst[o, index[r], p] = src[o, r, p] with src viewed as [outer, count, inner] and dst as
// [outer, dst_count, inner]: the inverse of gather_channels; channels not listed keep their values.
// The indices must be distinct and lie in [0, dst_count).
void scatter_channels_cpu(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* index,
                          int64_t dst_count, float* dst);
// dst[index[r], k] += src[r, k] for r < count, k < row_length. The indices must be distinct.
void scatter_add_rows_cpu(const float* src, int64_t count, int64_t row_length, const int64_t* index, float* dst);

void gather_channels(const float* src, int64_t outer, int64_t src_count, int64_t inner, const int64_t* index,
                     int64_t count, float* dst, cudaStream_t stream);
void scatter_channels(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* index,
                      int64_t dst_count, float* dst, cudaStream_t stream);
// The indices are distinct (the mask's rows are), so no two threads add into the same entry and no
// atomics are needed.
void scatter_add_rows(const float* src, int64_t count, int64_t row_length, const int64_t* index, float* dst,
                      cudaStream_t stream);

}  // namespace nnr::kernels
