// Max pooling forward and backward.
// Layout: x / dx are [planes, height, width] row-major (planes = N·C), y / dy / argmax are
// [planes, out_height, out_width]; argmax holds flat indices into x.
// Forward: one thread per output element, strict '>' scan in row-major window order: the same
// element as the CPU reference, so y and argmax are bit-identical.
// Backward: dx is zeroed, then each output adds its gradient (0 where relu_y is given and not > 0)
// at its argmax with atomicAdd. With
// stride ≥ window no two outputs share an input and the result is exact; overlapping windows
// add in a varying order (a few ulps from the CPU's sequential sum).
#include "kernels/max_pool.h"

#include <string>

#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

__global__ void max_pool2d_forward_kernel(int64_t total, const float* __restrict__ x, int64_t height, int64_t width,
                                          int64_t window, int64_t stride, int64_t out_height, int64_t out_width,
                                          float* __restrict__ y, int64_t* __restrict__ argmax) {
  for (int64_t o = first_index(); o < total; o += grid_stride()) {
    const int64_t j = o % out_width;
    const int64_t i = (o / out_width) % out_height;
    const int64_t p = o / (out_width * out_height);
    const float* plane = x + p * height * width;
    int64_t best = (i * stride) * width + j * stride;
    float best_value = plane[best];
    for (int64_t di = 0; di < window; ++di)
      for (int64_t dj = 0; dj < window; ++dj) {
        const int64_t idx = (i * stride + di) * width + (j * stride + dj);
        const float v = plane[idx];
        if (v > best_value) {
          best = idx;
          best_value = v;
        }
      }
    y[o] = best_value;
    argmax[o] = p * height * width + best;
  }
}

__global__ void max_pool2d_backward_kernel(int64_t total, const float* __restrict__ dy,
                                           const int64_t* __restrict__ argmax, const float* __restrict__ relu_y,
                                           float* dx) {
  for (int64_t o = first_index(); o < total; o += grid_stride())
    atomicAdd(dx + argmax[o], relu_y && !(relu_y[o] > 0.0f) ? 0.0f : dy[o]);
}

void check_shape(const PoolShape& s, const char* op) {
  if (s.planes < 0 || s.window < 1 || s.stride < 1 || s.height < s.window || s.width < s.window)
    throw InvalidArgument(std::string("[") + op + "] bad shape: planes " + std::to_string(s.planes) + ", " +
                          std::to_string(s.height) + "x" + std::to_string(s.width) + ", window " +
                          std::to_string(s.window) + ", stride " + std::to_string(s.stride));
}

}  // namespace

void max_pool2d_forward(const float* x, const PoolShape& s, float* y, int64_t* argmax, cudaStream_t stream) {
  check_shape(s, "max_pool2d");
  launch_1d(s.out_numel(), stream, max_pool2d_forward_kernel, x, s.height, s.width, s.window, s.stride,
            s.out_height(), s.out_width(), y, argmax);
}

void max_pool2d_backward(const float* dy, const int64_t* argmax, const PoolShape& s, float* dx, cudaStream_t stream,
                         const float* relu_y) {
  check_shape(s, "max_pool2d_backward");
  const int64_t in_numel = s.planes * s.height * s.width;
  if (in_numel > 0) NNR_CUDA_CHECK(cudaMemsetAsync(dx, 0, static_cast<size_t>(in_numel) * sizeof(float), stream));
  launch_1d(s.out_numel(), stream, max_pool2d_backward_kernel, dy, argmax, relu_y, dx);
}

}  // namespace nnr::kernels
