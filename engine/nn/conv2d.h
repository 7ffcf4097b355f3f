#pragma once
// Conv2d: weight [out, in, k, k], bias [out], square kernel, stride and zero padding, as
// PyTorch's nn.Conv2d. Backward with a Rows mask on the weight computes only the open filters.
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
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  Conv2dGeometry geometry() const { return geometry_; }

 private:
  int64_t in_, out_, kernel_;
  Conv2dGeometry geometry_;
  Parameter weight_, bias_;
  RowIndex weight_rows_, bias_rows_;  // the open filters on the device, uploaded when they change
};

}  // namespace nnr
