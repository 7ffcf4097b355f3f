#include "engine/nn/linear.h"

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/gather.h"
#include "engine/ops/gemm.h"

namespace nnr {

Linear::Linear(int64_t in_features, int64_t out_features, bool he_init, Rng& rng)
    : in_(in_features), out_(out_features) {
  if (in_ < 1 || out_ < 1)
    throw InvalidArgument("[linear] features must be >= 1, got " + std::to_string(in_) + " -> " + std::to_string(out_));
  weight_.name = "weight";
  weight_.value = Tensor({out_, in_});
  weight_.grad = Tensor({out_, in_});
  if (he_init)
    init_he_normal(weight_.value, in_, rng);
  else
    init_xavier_uniform(weight_.value, in_, out_, rng);
  bias_.name = "bias";
  bias_.value = Tensor({out_});
  bias_.grad = Tensor({out_});
}

std::string Linear::describe() const {
  return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) + ")";
}

Shape Linear::output_shape(const Shape& input) const {
  const int64_t per_sample = input.size() < 2 ? 0 : shape_numel(Shape(input.begin() + 1, input.end()));
  if (per_sample != in_)
    throw InvalidArgument("[" + describe() + "] input " + shape_to_string(input) + " does not have " +
                          std::to_string(in_) + " features per sample");
  return {input[0], out_};
}

Tensor Linear::forward(const Tensor& x, bool /*training*/) {
  require_placement(weight_.value, x.placement(), "linear", "weight (move the model with Sequential::to)");
  Tensor y = Tensor::empty(output_shape(x.shape()), x.placement());
  gemm(x.placement(), x.data(), false, weight_.value.data(), true, y.data(), x.dim(0), out_, in_, 1.0f, 0.0f);
  add_bias(y, bias_.value);
  counts_.forward_flops += x.dim(0) * out_ * (2 * in_ + 1);
  return y;
}

void Linear::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  const int64_t n = x.dim(0);
  const Placement where = x.placement();
  // The row lists index the gathers and scatters below: refuse a bad one before any is read.
  weight_.mask.validate(weight_.value.numel(), weight_.rows(), weight_.name);
  bias_.mask.validate(bias_.value.numel(), bias_.rows(), bias_.name);
  const UpdateMask& wm = weight_.mask;
  if (wm.kind == UpdateMask::Kind::Rows) {
    // dW[r] = Σ_n dy[n, r] x[n] for the open rows only: one GEMM of the gathered dy columns.
    const int64_t open = static_cast<int64_t>(wm.rows.size());
    if (open > 0) {
      const int64_t* rows = weight_rows_.on(where, wm.rows);
      Tensor dy_open = Tensor::empty({n, open}, where);
      gather_channels(dy, rows, open, dy_open);
      Tensor dw_open = Tensor::empty({open, in_}, where);
      gemm(where, dy_open.data(), true, x.data(), false, dw_open.data(), open, in_, n, 1.0f, 0.0f);
      scatter_add_rows(dw_open, rows, weight_.grad);
    }
    counts_.weight_grad_flops += 2 * n * open * in_;
  } else {
    gemm(where, dy.data(), true, x.data(), false, weight_.grad.data(), out_, in_, n, 1.0f, 1.0f);
    counts_.weight_grad_flops += 2 * n * out_ * in_;
  }

  if (bias_.mask.kind == UpdateMask::Kind::Rows) {
    bias_backward_rows(dy, bias_.mask.rows, bias_rows_, bias_.grad);
    counts_.weight_grad_flops += n * static_cast<int64_t>(bias_.mask.rows.size());
  } else {
    bias_backward(dy, bias_.grad, /*accumulate=*/true);
    counts_.weight_grad_flops += n * out_;
  }

  if (dx) {
    gemm(where, dy.data(), false, weight_.value.data(), false, dx->data(), n, in_, out_, 1.0f, 0.0f);
    counts_.input_grad_flops += 2 * n * out_ * in_;
  }
}

}  // namespace nnr
