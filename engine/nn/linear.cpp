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

void Linear::parameter_backward(const Tensor& x, const Tensor& dy) {
  const int64_t n = x.dim(0);
  const Placement where = x.placement();
  // The row lists index the gathers and scatters below: refuse a bad one before any is read.
  weight_.mask.validate(weight_.value.numel(), weight_.rows(), weight_.name);
  bias_.mask.validate(bias_.value.numel(), bias_.rows(), bias_.name);
  const UpdateMask& wm = weight_.mask;
  const UpdateMask& bm = bias_.mask;
  if (wm.kind == UpdateMask::Kind::Rows) {
    // dW[r] = Σ_n dy[n, r] x[n] for the open rows only: one GEMM of the gathered dy columns.
    // (A GEMM per run of adjacent rows, straight into dW, was slower on the CPU: each call packs
    // all of x again, which costs more than the scatter it saves.)
    const int64_t open = static_cast<int64_t>(wm.rows.size());
    if (open > 0) {
      const int64_t* rows = weight_rows_.on(where, wm.rows);
      Tensor& dy_open = scratch(dy_open_, {n, open}, where);
      gather_channels(dy, rows, open, dy_open);
      Tensor& dw_open = scratch(dw_open_, {open, in_}, where);
      gemm(where, dy_open.data(), true, x.data(), false, dw_open.data(), open, in_, n, 1.0f, 0.0f);
      scatter_add_rows(dw_open, rows, weight_.grad);
    }
    counts_.weight_grad_flops += 2 * n * open * in_;
  } else {
    gemm(where, dy.data(), true, x.data(), false, weight_.grad.data(), out_, in_, n, 1.0f, 1.0f);
    counts_.weight_grad_flops += 2 * n * out_ * in_;
  }
  if (bm.kind == UpdateMask::Kind::Rows) {
    bias_backward_rows(dy, bm.rows, bias_rows_, bias_.grad);
    counts_.weight_grad_flops += n * static_cast<int64_t>(bm.rows.size());
  } else {
    bias_backward(dy, bias_.grad, /*accumulate=*/true);
    counts_.weight_grad_flops += n * out_;
  }
}

void Linear::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  parameter_backward(x, dy);
  if (dx) {
    const int64_t n = x.dim(0);
    gemm(x.placement(), dy.data(), false, weight_.value.data(), false, dx->data(), n, in_, out_, 1.0f, 0.0f);
    counts_.input_grad_flops += 2 * n * out_ * in_;
  }
}

bool Linear::output_grad_channels(const Shape& /*x*/, const Shape& /*y*/, bool dx_wanted,
                                  const std::vector<int64_t>* /*dx_channels*/, std::vector<int64_t>& dy_channels) {
  if (dx_wanted) return false;  // dx = dy·W reads every output
  // The lists become channel indices of the layer above: refuse a bad one first.
  weight_.mask.validate(weight_.value.numel(), weight_.rows(), weight_.name);
  bias_.mask.validate(bias_.value.numel(), bias_.rows(), bias_.name);
  return open_rows_of({&weight_.mask, &bias_.mask}, dy_channels);
}

void Linear::backward_channels(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx,
                               const std::vector<int64_t>& dx_channels) {
  // Features are axis 1 only when x is [N, in] (an image input flattens inside the GEMM).
  if (x.rank() != 2) return backward(x, y, dy, &dx);
  require_channels(dx_channels, in_);
  parameter_backward(x, dy);
  const int64_t n = x.dim(0), count = static_cast<int64_t>(dx_channels.size());
  const Placement where = x.placement();
  // dx[:, S] = dy · W[:, S]: gather W's columns S, one GEMM into a compact [N, |S|], put in place.
  const int64_t* features = dx_features_.on(where, dx_channels);
  Tensor& w_columns = scratch(w_columns_, {out_, count}, where);
  gather_channels(weight_.value, features, count, w_columns);
  Tensor& dx_compact = scratch(dx_compact_, {n, count}, where);
  gemm(where, dy.data(), false, w_columns.data(), false, dx_compact.data(), n, count, out_, 1.0f, 0.0f);
  dx.zero();
  scatter_channels(dx_compact, features, dx);
  counts_.input_grad_flops += 2 * n * out_ * count;
}

}  // namespace nnr
