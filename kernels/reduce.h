#pragma once
// Reductions on the device: bias gradients (per-channel sums) and whole-array sums and norms.
// CPU references: engine/ops/elementwise.h bias_backward; for sums and norms a plain double loop.
// All pointers are device pointers; asynchronous on `stream`.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace nnr::kernels {

// db[c] (+)= Σ over o, i of dy[o, c, i], dy viewed as [outer, channels, inner]; summed in double
// and rounded once, like the CPU. accumulate false overwrites db.
void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner, bool accumulate,
                   cudaStream_t stream);

// Bytes of device workspace the whole-array reductions below need for n elements.
size_t reduce_workspace_bytes(int64_t n);
// *result (one device double, overwritten) = Σ x[i]; deterministic for a given n and device.
void sum(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);
// *result = Σ x[i]².
void sum_squares(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);
// *result = √(Σ x[i]²).
void l2_norm(const float* x, int64_t n, double* result, void* workspace, cudaStream_t stream);

}  // namespace nnr::kernels
