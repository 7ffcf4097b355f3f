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
  return y;
}

void Conv2d::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  const UpdateMask& wm = weight_.mask;
  if (!wm.selects_none())
    conv2d_backward_filter(x, dy, geometry_, wm.kind == UpdateMask::Kind::Rows ? &wm.rows : nullptr, weight_.grad,
                           &weight_rows_);
  if (bias_.mask.kind == UpdateMask::Kind::Rows)
    bias_backward_rows(dy, bias_.mask.rows, bias_rows_, bias_.grad);
  else
    bias_backward(dy, bias_.grad, /*accumulate=*/true);

  if (dx) conv2d_backward_data(dy, weight_.value, geometry_, *dx);
}

}  // namespace nnr
