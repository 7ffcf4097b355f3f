#pragma once
// The parameter-free layers: ReLU, MaxPool2d, Flatten, Dropout. ReLU, MaxPool2d and Dropout keep
// axis 1 (a selective backward's dy reads the channels dx needs); Flatten maps channel c of
// [N, C, ...] to the features of its block of [N, C·...].
#include <cstdint>
#include <vector>

#include "engine/core/rng.h"
#include "engine/nn/layer.h"
#include "engine/ops/max_pool.h"

namespace nnr {

class ReLU final : public Layer {
 public:
  std::string describe() const override { return "ReLU()"; }
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;
  // The input-gradient FLOPs of a backward the layer above ran for this one (backward_through_relu).
  void count_fused_input_grad(int64_t flops) { counts_.input_grad_flops += flops; }
};

class MaxPool2d final : public Layer {
 public:
  explicit MaxPool2d(int64_t window, int64_t stride = 0);  // stride 0: = window
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  // The pooled value is the ReLU's output at the chosen element: dy passes where y > 0, scattered
  // straight into the ReLU's input gradient (no masking pass over the ReLU's output).
  bool backward_through_relu(ReLU& relu, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& relu_dx) override;
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;

 private:
  int64_t window_, stride_;
  MaxPoolArgmax argmax_;  // from the last training forward (host or device indices)
};

// [N, d1, d2, ...] -> [N, d1 * d2 * ...]
class Flatten final : public Layer {
 public:
  std::string describe() const override { return "Flatten()"; }
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;
};

// Inverted dropout; the identity when not training.
class Dropout final : public Layer {
 public:
  Dropout(float rate, uint64_t seed);
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;
  float rate() const { return rate_; }

 private:
  float rate_;
  Rng rng_;
  Tensor mask_;  // from the last training forward
};

}  // namespace nnr
