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

void Conv2d::parameter_backward(const Tensor& x, const Tensor& dy) {
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
}

void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  parameter_backward(x, dy);
  if (dx) {
    conv2d_backward_data(dy, weight_.value, geometry_, *dx);
    counts_.input_grad_flops += 2 * dy.dim(0) * dy.dim(2) * dy.dim(3) * out_ * in_ * kernel_ * kernel_;
  }
}

bool Conv2d::output_grad_channels(const Shape& /*x*/, const Shape& /*y*/, bool dx_wanted,
                                  const std::vector<int64_t>* /*dx_channels*/, std::vector<int64_t>& dy_channels) {
  if (dx_wanted) return false;  // the transposed convolution reads every filter's dy
  // The lists become channel indices of the layer above: refuse a bad one first.
  weight_.mask.validate(weight_.value.numel(), weight_.rows(), weight_.name);
  bias_.mask.validate(bias_.value.numel(), bias_.rows(), bias_.name);
  return open_rows_of({&weight_.mask, &bias_.mask}, dy_channels);
}

void Conv2d::backward_channels(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor& dx,
                               const std::vector<int64_t>& dx_channels) {
  require_channels(dx_channels, in_);
  parameter_backward(x, dy);
  const int64_t count = static_cast<int64_t>(dx_channels.size());
  // dx[:, S] is the transposed convolution of dy with the weight's input channels S alone
  // (W[:, S] gathered to [O, |S|, K, K]): computed compactly, then put in place.
  const Placement where = x.placement();
  const int64_t* channels = dx_channels_.on(where, dx_channels);
  Tensor& w_channels = scratch(w_channels_, {out_, count, kernel_, kernel_}, where);
  gather_channels(weight_.value, channels, count, w_channels);
  Tensor& dx_compact = scratch(dx_compact_, {x.dim(0), count, x.dim(2), x.dim(3)}, where);
  conv2d_backward_data(dy, w_channels, geometry_, dx_compact);
  dx.zero();
  scatter_channels(dx_compact, channels, dx);
  counts_.input_grad_flops += 2 * dy.dim(0) * dy.dim(2) * dy.dim(3) * out_ * count * kernel_ * kernel_;
}

}  // namespace nnr
