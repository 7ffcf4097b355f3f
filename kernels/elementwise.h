#pragma once
// Elementwise and channel-broadcast ops of the layers: bias add and its gradient, ReLU, inverted
// dropout. Tensors are contiguous float arrays; the bias ops view y / dy as [outer, channels, inner]
// (a [N, C] matrix: inner = 1; an [N, C, H, W] tensor: inner = H·W).
//   *_cpu  the CPU reference (kernels/elementwise.cpp), host pointers.
//   others the CUDA launchers (kernels/elementwise.cu), device pointers, asynchronous on `stream`;
//          every result but bias_backward's is bit-identical to the CPU's (one float op per element).
// Gradient convention: *_backward overwrites its output, bias_backward adds when `accumulate`.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nnr::kernels {

// ---- CPU reference.
void add_bias_cpu(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner);
// db[c] (+)= Σ over o, i of dy[o, c, i], summed in double per channel and rounded once.
void bias_backward_cpu(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner, bool accumulate);
// db[rows[k]] += Σ over o, i of dy[o, rows[k], i] for k < count (distinct rows in [0, channels)):
// the bias gradient of the open channels, read in place (no gathered copy); each sum is the one
// bias_backward_cpu computes for that channel, bit for bit.
void bias_backward_rows_cpu(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                            const int64_t* rows, int64_t count);
void relu_forward_cpu(const float* x, float* y, int64_t n);
void relu_backward_cpu(const float* y, const float* dy, float* dx, int64_t n);
// mask[i] = (uniform() < rate) ? 0 : 1 / (1 − rate), y = x · mask, drawing uniform() (a double in
// [0, 1)) once per element in index order (the engine passes its seeded generator).
template <typename Uniform>
void dropout_forward_cpu(const float* x, float rate, Uniform&& uniform, float* y, float* mask, int64_t n) {
  const float scale = 1.0f / (1.0f - rate);
  for (int64_t i = 0; i < n; ++i) {
    mask[i] = uniform() < rate ? 0.0f : scale;
    y[i] = x[i] * mask[i];
  }
}
void dropout_backward_cpu(const float* mask, const float* dy, float* dx, int64_t n);

// ---- CUDA launchers.
// y[o, c, i] += bias[c].
void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner, cudaStream_t stream);
// db[c] (+)= Σ over o, i of dy[o, c, i]; summed in double and rounded once, like the CPU.
// accumulate false overwrites db.
void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner, bool accumulate,
                   cudaStream_t stream);
// The same for the channels `rows` only, adding into db[rows[k]] (rows on the device).
void bias_backward_rows(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                        const int64_t* rows, int64_t count, cudaStream_t stream);
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
