#include "engine/ops/pool.h"

#include "engine/core/context.h"
#include "engine/core/error.h"
#ifdef NNR_WITH_CUDA
#include "kernels/max_pool.h"
#endif

namespace nnr {

Shape max_pool2d_output_shape(const Shape& in, int64_t window, int64_t stride) {
  if (in.size() != 4)
    throw InvalidArgument("[max_pool2d] expected [N, C, H, W] input, got " + shape_to_string(in));
  if (window < 1 || stride < 1)
    throw InvalidArgument("[max_pool2d] window and stride must be >= 1");
  if (in[2] < window || in[3] < window)
    throw InvalidArgument("[max_pool2d] window " + std::to_string(window) + " larger than input " +
                          shape_to_string(in));
  return {in[0], in[1], (in[2] - window) / stride + 1, (in[3] - window) / stride + 1};
}

void max_pool2d_forward(const Tensor& x, int64_t window, int64_t stride, Tensor& y, std::vector<int64_t>& argmax) {
  require_cpu(x, "max_pool2d");
  const Shape out = max_pool2d_output_shape(x.shape(), window, stride);
  require_shape(y, out, "max_pool2d", "output");
  const int64_t planes = out[0] * out[1], h = x.dim(2), w = x.dim(3), ho = out[2], wo = out[3];
  argmax.resize(static_cast<size_t>(y.numel()));
  const float* in = x.data();
  float* o = y.data();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = in + p * h * w;
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j) {
        int64_t best = (i * stride) * w + j * stride;
        for (int64_t di = 0; di < window; ++di)
          for (int64_t dj = 0; dj < window; ++dj) {
            const int64_t idx = (i * stride + di) * w + (j * stride + dj);
            // Strict '>' keeps the first maximum, and a NaN never wins: same as a plain scan.
            if (plane[idx] > plane[best]) best = idx;
          }
        const int64_t out_idx = (p * ho + i) * wo + j;
        o[out_idx] = plane[best];
        argmax[static_cast<size_t>(out_idx)] = p * h * w + best;
      }
  }
}

void max_pool2d_backward(const Tensor& dy, const std::vector<int64_t>& argmax, Tensor& dx) {
  require_cpu(dy, "max_pool2d_backward");
  if (static_cast<int64_t>(argmax.size()) != dy.numel())
    throw InvalidArgument("[max_pool2d_backward] argmax has " + std::to_string(argmax.size()) + " entries for " +
                          std::to_string(dy.numel()) + " gradients");
  dx.zero();
  float* d = dx.data();
  const float* g = dy.data();
  for (int64_t i = 0; i < dy.numel(); ++i) d[argmax[static_cast<size_t>(i)]] += g[i];
}

void max_pool2d_forward(const Tensor& x, int64_t window, int64_t stride, Tensor& y, MaxPoolArgmax& argmax) {
  if (x.device() == Device::CPU) {
    argmax.device_storage = Tensor();
    max_pool2d_forward(x, window, stride, y, argmax.host);
    return;
  }
  const Shape out = max_pool2d_output_shape(x.shape(), window, stride);
  require_placement(y, x.placement(), "max_pool2d", "output");
  require_shape(y, out, "max_pool2d", "output");
#ifdef NNR_WITH_CUDA
  argmax.host.clear();
  argmax.window = window, argmax.stride = stride;
  const Shape storage{2 * y.numel()};
  if (argmax.device_storage.shape() != storage || argmax.device_storage.context() != x.context())
    argmax.device_storage = Tensor::empty(storage, x.placement());
  kernels::PoolShape shape;
  shape.planes = x.dim(0) * x.dim(1);
  shape.height = x.dim(2), shape.width = x.dim(3);
  shape.window = window, shape.stride = stride;
  kernels::max_pool2d_forward(x.data(), shape, y.data(), reinterpret_cast<int64_t*>(argmax.device_storage.data()),
                              x.context()->stream());
#else
  throw_not_implemented_on_cuda("max_pool2d");
#endif
}

void max_pool2d_backward(const Tensor& dy, const MaxPoolArgmax& argmax, Tensor& dx) {
  if (dy.device() == Device::CPU) {
    max_pool2d_backward(dy, argmax.host, dx);
    return;
  }
  require_placement(dx, dy.placement(), "max_pool2d_backward", "dx");
  require_placement(argmax.device_storage, dy.placement(), "max_pool2d_backward", "argmax");
  if (argmax.device_storage.numel() != 2 * dy.numel())
    throw InvalidArgument("[max_pool2d_backward] argmax of " + std::to_string(argmax.device_storage.numel() / 2) +
                          " outputs for " + std::to_string(dy.numel()) + " gradients");
  if (dx.rank() != 4) throw InvalidArgument("[max_pool2d_backward] expected [N, C, H, W] dx, got " + shape_to_string(dx.shape()));
#ifdef NNR_WITH_CUDA
  kernels::PoolShape shape;
  shape.planes = dx.dim(0) * dx.dim(1);
  shape.height = dx.dim(2), shape.width = dx.dim(3);
  shape.window = argmax.window, shape.stride = argmax.stride;
  if (shape.window < 1 || shape.stride < 1 || shape.out_numel() != dy.numel())
    throw InvalidArgument("[max_pool2d_backward] dx " + shape_to_string(dx.shape()) + " does not match the forward's " +
                          std::to_string(dy.numel()) + " outputs");
  kernels::max_pool2d_backward(dy.data(), reinterpret_cast<const int64_t*>(argmax.device_storage.data()), shape,
                               dx.data(), dy.context()->stream());
#else
  throw_not_implemented_on_cuda("max_pool2d_backward");
#endif
}

}  // namespace nnr
