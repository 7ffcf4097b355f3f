#include "engine/ops/max_pool.h"

#include "engine/core/backend.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

kernels::PoolShape pool_shape_of(const Shape& input, int64_t window, int64_t stride) {
  kernels::PoolShape shape;
  shape.planes = input[0] * input[1];
  shape.height = input[2], shape.width = input[3];
  shape.window = window, shape.stride = stride;
  return shape;
}

// The shape of a backward whose forward had `window` and `stride`, checked against dy, dx and relu_y.
kernels::PoolShape backward_shape(const Tensor& dy, const Tensor& dx, int64_t window, int64_t stride,
                                  const Tensor* relu_y) {
  if (dx.rank() != 4)
    throw InvalidArgument("[max_pool2d_backward] expected [N, C, H, W] dx, got " + shape_to_string(dx.shape()));
  const kernels::PoolShape shape = pool_shape_of(dx.shape(), window, stride);
  if (shape.window < 1 || shape.stride < 1 || dx.dim(2) < window || dx.dim(3) < window ||
      shape.out_numel() != dy.numel())
    throw InvalidArgument("[max_pool2d_backward] dx " + shape_to_string(dx.shape()) + " does not match the forward's " +
                          std::to_string(dy.numel()) + " outputs");
  if (relu_y && relu_y->numel() != dy.numel())
    throw InvalidArgument("[max_pool2d_backward] relu_y has " + std::to_string(relu_y->numel()) + " entries for " +
                          std::to_string(dy.numel()) + " gradients");
  return shape;
}

}  // namespace

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
  argmax.resize(static_cast<size_t>(y.numel()));
  cpu_backend().max_pool2d_forward(x.data(), pool_shape_of(x.shape(), window, stride), y.data(), argmax.data());
}

void max_pool2d_backward(const Tensor& dy, const std::vector<int64_t>& argmax, int64_t window, int64_t stride,
                         Tensor& dx, const Tensor* relu_y) {
  require_cpu(dy, "max_pool2d_backward");
  require_cpu(dx, "max_pool2d_backward");
  if (relu_y) require_cpu(*relu_y, "max_pool2d_backward");
  if (static_cast<int64_t>(argmax.size()) != dy.numel())
    throw InvalidArgument("[max_pool2d_backward] argmax has " + std::to_string(argmax.size()) + " entries for " +
                          std::to_string(dy.numel()) + " gradients");
  const kernels::PoolShape shape = backward_shape(dy, dx, window, stride, relu_y);
  kernels::max_pool2d_backward_cpu(dy.data(), argmax.data(), shape, dx.data(), relu_y ? relu_y->data() : nullptr);
}

void max_pool2d_forward(const Tensor& x, int64_t window, int64_t stride, Tensor& y, MaxPoolArgmax& argmax) {
  argmax.window = window, argmax.stride = stride;
  if (x.device() == Device::CPU) {
    argmax.device_storage = Tensor();
    max_pool2d_forward(x, window, stride, y, argmax.host);
    return;
  }
  const Shape out = max_pool2d_output_shape(x.shape(), window, stride);
  require_placement(y, x.placement(), "max_pool2d", "output");
  require_shape(y, out, "max_pool2d", "output");
  argmax.host.clear();
  const Shape storage{2 * y.numel()};
  if (argmax.device_storage.shape() != storage || argmax.device_storage.context() != x.context())
    argmax.device_storage = Tensor::empty(storage, x.placement());
  backend_of(x).max_pool2d_forward(x.data(), pool_shape_of(x.shape(), window, stride), y.data(),
                                   reinterpret_cast<int64_t*>(argmax.device_storage.data()));
}

void max_pool2d_backward(const Tensor& dy, const MaxPoolArgmax& argmax, Tensor& dx, const Tensor* relu_y) {
  if (dy.device() == Device::CPU) {
    max_pool2d_backward(dy, argmax.host, argmax.window, argmax.stride, dx, relu_y);
    return;
  }
  require_placement(dx, dy.placement(), "max_pool2d_backward", "dx");
  require_placement(argmax.device_storage, dy.placement(), "max_pool2d_backward", "argmax");
  if (relu_y) require_placement(*relu_y, dy.placement(), "max_pool2d_backward", "relu_y");
  if (argmax.device_storage.numel() != 2 * dy.numel())
    throw InvalidArgument("[max_pool2d_backward] argmax of " + std::to_string(argmax.device_storage.numel() / 2) +
                          " outputs for " + std::to_string(dy.numel()) + " gradients");
  const kernels::PoolShape shape = backward_shape(dy, dx, argmax.window, argmax.stride, relu_y);
  backend_of(dy).max_pool2d_backward(dy.data(), reinterpret_cast<const int64_t*>(argmax.device_storage.data()), shape,
                                     dx.data(), relu_y ? relu_y->data() : nullptr);
}

}  // namespace nnr
