#pragma once
// Elementwise and channel-broadcast kernels of the layers, on the device. CPU references:
// engine/ops/elementwise.h (add_bias, relu_forward/backward, dropout_forward/backward).
// All pointers are device pointers; every launcher is asynchronous on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nnr::kernels {

// y[o, c, i] += bias[c] on y viewed as [outer, channels, inner] (a [N, C] matrix: inner = 1;
// an [N, C, H, W] tensor: inner = H·W).
void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner, cudaStream_t stream);
// y = max(x, 0) (y may alias x).
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = dy where y > 0, else 0 (dx may alias dy).
void relu_backward(const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// Inverted dropout: mask[i] = (u_i < rate) ? 0 : 1 / (1 − rate), y = x · mask, where u_i is a
// uniform [0, 1) draw from a counter-based hash of (seed, i): the same seed gives the same
// mask on any device and launch shape (it cannot reproduce the CPU's sequential generator).
// rate must lie in [0, 1) (nnr::InvalidArgument otherwise).
void dropout_forward(const float* x, float rate, uint64_t seed, float* y, float* mask, int64_t n,
                     cudaStream_t stream);
// dx = dy · mask.
void dropout_backward(const float* mask, const float* dy, float* dx, int64_t n, cudaStream_t stream);

// The uniform draw dropout_forward uses for element i (host copy of the device function, for tests).
double dropout_uniform(uint64_t seed, int64_t i);

}  // namespace nnr::kernels
