#pragma once
// 2-D max pooling over [N, C, H, W] (square window, stride, no padding: windows that do not fit are
// dropped, as PyTorch's MaxPool2d does by default).
//   *_cpu  the CPU reference (kernels/max_pool.cpp), host pointers.
//   others the CUDA launchers (kernels/max_pool.cu), device pointers, asynchronous on `stream`.
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nnr::kernels {

struct PoolShape {
  int64_t planes = 0;      // N · C
  int64_t height = 0, width = 0;
  int64_t window = 2, stride = 2;
  int64_t out_height() const { return (height - window) / stride + 1; }
  int64_t out_width() const { return (width - window) / stride + 1; }
  int64_t out_numel() const { return planes * out_height() * out_width(); }
};

// y[p, i, j] = max of the window; argmax (out_numel int64) = flat index into x of the chosen
// element (the first maximum in row-major window order; a NaN never wins).
void max_pool2d_forward_cpu(const float* x, const PoolShape& shape, float* y, int64_t* argmax);
// dx = 0 (planes · height · width entries), then dx[argmax[i]] += dy[i] for every output i.
// relu_y: the pool's input is the output of a ReLU and dx is the gradient of that ReLU's input:
// dy[i] passes only where the pooled value relu_y[i] (the forward's y) is > 0, which is where the
// ReLU passed the chosen element: one pass instead of a scatter and a masking pass over x's size.
// Null: plain max-pool backward.
void max_pool2d_backward_cpu(const float* dy, const int64_t* argmax, const PoolShape& shape, float* dx,
                             const float* relu_y = nullptr);

void max_pool2d_forward(const float* x, const PoolShape& shape, float* y, int64_t* argmax, cudaStream_t stream);
// The same as max_pool2d_backward_cpu (dx overwritten; relu_y as there, or null).
void max_pool2d_backward(const float* dy, const int64_t* argmax, const PoolShape& shape, float* dx,
                         cudaStream_t stream, const float* relu_y = nullptr);

}  // namespace nnr::kernels
