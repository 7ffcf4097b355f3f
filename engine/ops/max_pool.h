#pragma once
// 2-D max pooling over [N, C, H, W] with a square window, stride = window unless given, no
// padding (windows that do not fit are dropped, as PyTorch's MaxPool2d does by default).
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

Shape max_pool2d_output_shape(const Shape& input, int64_t window, int64_t stride);
// argmax receives, per output element, the flat index of the chosen input element.
void max_pool2d_forward(const Tensor& x, int64_t window, int64_t stride, Tensor& y, std::vector<int64_t>& argmax);
// dx = 0, then dx[argmax[i]] += dy[i]; overwrites dx (the forward's input shape; window and stride
// are the forward's). relu_y: the pool's input is a ReLU's output and dx that ReLU's input
// gradient: dy passes where relu_y (the forward's y) is > 0 (kernels/max_pool.h); null: plain.
void max_pool2d_backward(const Tensor& dy, const std::vector<int64_t>& argmax, int64_t window, int64_t stride,
                         Tensor& dx, const Tensor* relu_y = nullptr);

// The argmax of a forward on either device: host indices for CPU tensors; for CUDA tensors the
// indices stay on the device, as int64 in the raw storage of a float tensor of twice their count
// (Tensor holds floats only; this keeps the memory in the context's caching allocator).
struct MaxPoolArgmax {
  std::vector<int64_t> host;
  Tensor device_storage;
  int64_t window = 0, stride = 0;  // of the forward that filled it
};
void max_pool2d_forward(const Tensor& x, int64_t window, int64_t stride, Tensor& y, MaxPoolArgmax& argmax);
void max_pool2d_backward(const Tensor& dy, const MaxPoolArgmax& argmax, Tensor& dx, const Tensor* relu_y = nullptr);

}  // namespace nnr
