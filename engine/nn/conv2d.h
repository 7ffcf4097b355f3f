#pragma once
// Conv2d: weight [out, in, k, k], bias [out], square kernel, stride and zero padding, as
// PyTorch's nn.Conv2d. Backward with a Rows mask on the weight computes only the open filters;
// with dx wanted in some input channels only (backward_channels), the transposed convolution runs
// on those channels' slices of the weight alone.
#include "engine/nn/layer.h"
#include "engine/ops/conv2d.h"

namespace nnr {

class Rng;

class Conv2d final : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Conv2dGeometry geometry, Rng& rng);
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;
  void backward_channels(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx,
                         const std::vector<int64_t>& dx_channels) override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  Conv2dGeometry geometry() const { return geometry_; }

 private:
  // dW and db of the open filters (weight_grad_flops).
  void parameter_backward(const Tensor& x, const Tensor& dy);

  int64_t in_, out_, kernel_;
  Conv2dGeometry geometry_;
  Parameter weight_, bias_;
  RowIndex weight_rows_, bias_rows_;  // the open filters on the device, uploaded when they change
  RowIndex dx_channels_;              // backward_channels' input channels on the device
  Tensor w_channels_, dx_compact_;    // backward_channels' scratch, kept between steps
};

}  // namespace nnr
