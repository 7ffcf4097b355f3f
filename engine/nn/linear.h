#pragma once
// Linear: y = x Wᵀ + b with W [out, in] and b [out], as PyTorch's nn.Linear. An input of rank
// > 2 is read as [N, in] (its trailing dimensions flattened), so an MLP takes images directly.
// Backward with a Rows mask on W computes only the open rows of dW (one GEMM of the gathered
// dy columns); bias gradients follow the bias's own mask. With dx wanted in some features only
// (backward_channels), dx = dy·W[:, features] for those (one GEMM on the gathered columns of W).
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
  bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels) override;
  void backward_channels(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx,
                         const std::vector<int64_t>& dx_channels) override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  // dW and db of the open rows (weight_grad_flops).
  void parameter_backward(const Tensor& x, const Tensor& dy);

  int64_t in_, out_;
  Parameter weight_, bias_;
  RowIndex weight_rows_, bias_rows_;  // the open rows on the device, uploaded when they change
  RowIndex dx_features_;              // backward_channels' features on the device
  // Per-step scratch, kept between steps: dy's open columns, the compact dW, W's gathered columns
  // and the compact dx.
  Tensor dy_open_, dw_open_, w_columns_, dx_compact_;
};

}  // namespace nnr
