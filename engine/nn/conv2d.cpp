#include "engine/nn/conv2d.h"

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/gather.h"

namespace nnr {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Conv2dGeometry geometry, Rng& rng)
    : in_(in_channels), out_(out_channels), kernel_(kernel), geometry_(geometry) {
  if (in_ < 1 || out_ < 1 || kernel_ < 1)
    throw InvalidArgument("[conv2d] channels and kernel must be >= 1, got " + std::to_string(in_) + " -> " +
                          std::to_string(out_) + ", kernel " + std::to_string(kernel_));
  weight_.name = "weight";
  weight_.value = Tensor({out_, in_, kernel_, kernel_});
  weight_.grad = Tensor({out_, in_, kernel_, kernel_});
  init_he_normal(weight_.value, in_ * kernel_ * kernel_, rng);
  bias_.name = "bias";
  bias_.value = Tensor({out_});
  bias_.grad = Tensor({out_});
}

std::string Conv2d::describe() const {
  return "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) + ", kernel_size=" + std::to_string(kernel_) +
         ", stride=" + std::to_string(geometry_.stride) + ", padding=" + std::to_string(geometry_.padding) + ")";
}

Shape Conv2d::output_shape(const Shape& input) const {
  try {
    return conv2d_output_shape(input, weight_.value.shape(), geometry_);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument("[" + describe() + "] input " + shape_to_string(input) + ": " + e.what());
  }
}

Tensor Conv2d::forward(const Tensor& x, bool /*training*/) {
  Tensor y = Tensor::empty(output_shape(x.shape()), x.placement());
  conv2d_forward(x, weight_.value, &bias_.value, geometry_, y);
  counts_.forward_flops += y.numel() * (2 * in_ * kernel_ * kernel_ + 1);  // y.numel() = N·O·Ho·Wo
  return y;
}

void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  // The row lists index the gathers and scatters below: refuse a bad one before any is read.
  weight_.mask.validate(weight_.value.numel(), weight_.rows(), weight_.name);
  bias_.mask.validate(bias_.value.numel(), bias_.rows(), bias_.name);
  const UpdateMask& wm = weight_.mask;
  const int64_t samples_pixels = dy.dim(0) * dy.dim(2) * dy.dim(3);  // N·Ho·Wo
  const int64_t patch_macs = in_ * kernel_ * kernel_;                 // multiply-adds per output element
  if (!wm.selects_none()) {
    const bool selected = wm.kind == UpdateMask::Kind::Rows;
    conv2d_backward_filter(x, dy, geometry_, selected ? &wm.rows : nullptr, weight_.grad, &weight_rows_);
    const int64_t open = selected ? static_cast<int64_t>(wm.rows.size()) : out_;
    counts_.weight_grad_flops += 2 * samples_pixels * open * patch_macs;
  }
  if (bias_.mask.kind == UpdateMask::Kind::Rows) {
    bias_backward_rows(dy, bias_.mask.rows, bias_rows_, bias_.grad);
    counts_.weight_grad_flops += samples_pixels * static_cast<int64_t>(bias_.mask.rows.size());
  } else {
    bias_backward(dy, bias_.grad, /*accumulate=*/true);
    counts_.weight_grad_flops += samples_pixels * out_;
  }

  if (dx) {
    conv2d_backward_data(dy, weight_.value, geometry_, *dx);
    counts_.input_grad_flops += 2 * samples_pixels * out_ * patch_macs;
  }
}

}  // namespace nnr
