#pragma once
// Linear: y = x Wᵀ + b with W [out, in] and b [out], as PyTorch's nn.Linear. An input of rank
// > 2 is read as [N, in] (its trailing dimensions flattened), so an MLP takes images directly.
// Backward with a Rows mask on W computes only the open rows of dW (one GEMM of the gathered
// dy columns); bias gradients follow the bias's own mask.
#include "engine/nn/layer.h"
#include "engine/ops/gather.h"

namespace nnr {

class Rng;

class Linear final : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool he_init, Rng& rng);
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, bool training) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Parameter weight_, bias_;
  RowIndex weight_rows_, bias_rows_;  // the open rows on the device, uploaded when they change
};

}  // namespace nnr
