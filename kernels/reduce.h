#pragma once
// Whole-array sums and norms on the device (CPU reference: a plain double loop; the per-channel
// bias gradient is an elementwise op, kernels/elementwise.h).
// All pointers are device pointers; asynchronous on `stream`.
#include "kernels/cuda_stream.h"

#include <cstddef>
#include <cstdint>

namespace nnr::kernels {

// Bytes of device workspace the whole-array reductions below need for n elements.
size_t reduce_workspace_bytes(int64_t n);
// *result (one device double, overwritten) = Σ x[i]; deterministic for a given n and device.
void sum(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);
// *result = Σ x[i]².
void sum_squares(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);
// *result = √(Σ x[i]²).
void l2_norm(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);

}  // namespace nnr::kernels
