#include "engine/nn/shape_layers.h"

#include <cstring>
#include <sstream>

#include "engine/core/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/max_pool.h"

namespace nnr {

Tensor ReLU::forward(const Tensor& x, bool /*training*/) {
  Tensor y = Tensor::empty(x.shape(), x.placement());
  relu_forward(x, y);
  counts_.forward_flops += x.numel();
  return y;
}

void ReLU::backward(const Tensor& /*x*/, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  relu_backward(y, dy, *dx);
  counts_.input_grad_flops += dy.numel();
}

bool ReLU::output_grad_channels(const Shape&, const Shape&, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                                std::vector<int64_t>& dy_channels) {
  return same_channels(dx_wanted, dx_channels, dy_channels);
}

MaxPool2d::MaxPool2d(int64_t window, int64_t stride) : window_(window), stride_(stride ? stride : window) {
  if (window_ < 1 || stride_ < 1) throw InvalidArgument("[max_pool2d] window and stride must be >= 1");
}

std::string MaxPool2d::describe() const {
  return "MaxPool2d(kernel_size=" + std::to_string(window_) + ", stride=" + std::to_string(stride_) + ")";
}

Shape MaxPool2d::output_shape(const Shape& input) const { return max_pool2d_output_shape(input, window_, stride_); }

Tensor MaxPool2d::forward(const Tensor& x, bool /*training*/) {
  Tensor y = Tensor::empty(output_shape(x.shape()), x.placement());
  max_pool2d_forward(x, window_, stride_, y, argmax_);
  counts_.forward_flops += y.numel() * window_ * window_;
  return y;
}

void MaxPool2d::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  max_pool2d_backward(dy, argmax_, *dx);
  counts_.input_grad_flops += dy.numel();
}

bool MaxPool2d::backward_through_relu(ReLU& relu, const Tensor& /*x*/, const Tensor& y, const Tensor& dy,
                                      Tensor& relu_dx) {
  max_pool2d_backward(dy, argmax_, relu_dx, &y);
  counts_.input_grad_flops += dy.numel();
  relu.count_fused_input_grad(dy.numel());  // one compare per pooled value
  return true;
}

bool MaxPool2d::output_grad_channels(const Shape&, const Shape&, bool dx_wanted,
                                     const std::vector<int64_t>* dx_channels, std::vector<int64_t>& dy_channels) {
  return same_channels(dx_wanted, dx_channels, dy_channels);
}

Shape Flatten::output_shape(const Shape& input) const {
  if (input.empty()) throw InvalidArgument("[flatten] input has no batch dimension");
  return {input[0], input.size() == 1 ? 1 : shape_numel(Shape(input.begin() + 1, input.end()))};
}

Tensor Flatten::forward(const Tensor& x, bool /*training*/) {
  Tensor y = x.clone();
  y.reshape(output_shape(x.shape()));
  return y;
}

void Flatten::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (dx) dx->copy_from(dy);
}

bool Flatten::output_grad_channels(const Shape& x, const Shape&, bool dx_wanted,
                                   const std::vector<int64_t>* dx_channels, std::vector<int64_t>& dy_channels) {
  if (!dx_wanted || !dx_channels || x.size() < 2) return false;
  // Channel c of x is the features [c·inner, (c + 1)·inner) of y.
  const int64_t inner = x.size() == 2 ? 1 : shape_numel(Shape(x.begin() + 2, x.end()));
  dy_channels.clear();
  for (const int64_t c : *dx_channels)
    for (int64_t k = 0; k < inner; ++k) dy_channels.push_back(c * inner + k);
  return true;
}

Dropout::Dropout(float rate, uint64_t seed) : rate_(rate), rng_(seed) {
  if (!(rate >= 0.0f && rate < 1.0f)) throw InvalidArgument("[dropout] rate must be in [0, 1), got " + std::to_string(rate));
}

std::string Dropout::describe() const {
  std::ostringstream out;
  out << "Dropout(p=" << rate_ << ")";
  return out.str();
}

Tensor Dropout::forward(const Tensor& x, bool training) {
  if (!training || rate_ == 0.0f) {
    mask_ = Tensor();
    return x.clone();
  }
  Tensor y = Tensor::empty(x.shape(), x.placement());
  mask_ = Tensor();  // return the last mask's memory before taking the new one
  mask_ = Tensor::empty(x.shape(), x.placement());
  dropout_forward(x, rate_, rng_, y, mask_);
  counts_.forward_flops += x.numel();
  return y;
}

bool Dropout::output_grad_channels(const Shape&, const Shape&, bool dx_wanted,
                                   const std::vector<int64_t>* dx_channels, std::vector<int64_t>& dy_channels) {
  return same_channels(dx_wanted, dx_channels, dy_channels);
}

void Dropout::backward(const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  if (!mask_.defined()) {
    dx->copy_from(dy);
    return;
  }
  dropout_backward(mask_, dy, *dx);
  counts_.input_grad_flops += dy.numel();
}

}  // namespace nnr
