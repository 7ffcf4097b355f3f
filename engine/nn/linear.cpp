#include "engine/nn/linear.h"

#include <cstring>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/ops/elementwise.h"
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
  gemm_on(x.placement(), x.data(), false, weight_.value.data(), true, y.data(), x.dim(0), out_, in_, 1.0f, 0.0f);
  add_bias(y, bias_.value);
  return y;
}

void Linear::backward(const Tensor& x, const Tensor& /*y*/, const Tensor& dy, Tensor* dx) {
  const int64_t n = x.dim(0);
  const Placement where = x.placement();
  const UpdateMask& wm = weight_.mask;
  // Row-selective gradients gather and scatter on the host; the device gather is not written yet.
  if (where.device == Device::CUDA &&
      (wm.kind == UpdateMask::Kind::Rows || bias_.mask.kind == UpdateMask::Kind::Rows) &&
      !(wm.selects_none() && bias_.mask.selects_none()))
    throw_not_implemented_on_cuda("linear row-selective backward");
  if (wm.kind == UpdateMask::Kind::Rows) {
    // dW[r] = Σ_n dy[n, r] x[n] for the open rows only: gather those columns of dy.
    const int64_t open = static_cast<int64_t>(wm.rows.size());
    if (open > 0) {
      Tensor dy_open = Tensor::empty({n, open});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < open; ++r) dy_open[i * open + r] = dy[i * out_ + wm.rows[static_cast<size_t>(r)]];
      Tensor dw_open = Tensor::empty({open, in_});
      gemm_cpu(dy_open.data(), true, x.data(), false, dw_open.data(), open, in_, n, 1.0f, 0.0f);
      for (int64_t r = 0; r < open; ++r) {
        float* dst = weight_.grad.data() + wm.rows[static_cast<size_t>(r)] * in_;
        const float* src = dw_open.data() + r * in_;
        for (int64_t k = 0; k < in_; ++k) dst[k] += src[k];
      }
    }
  } else {
    gemm_on(where, dy.data(), true, x.data(), false, weight_.grad.data(), out_, in_, n, 1.0f, 1.0f);
  }

  const UpdateMask& bm = bias_.mask;
  if (bm.kind == UpdateMask::Kind::Rows) {
    for (int64_t r : bm.rows) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += dy[i * out_ + r];
      bias_.grad[r] += static_cast<float>(s);
    }
  } else {
    bias_backward(dy, bias_.grad, /*accumulate=*/true);
  }

  if (dx) gemm_on(where, dy.data(), false, weight_.value.data(), false, dx->data(), n, in_, out_, 1.0f, 0.0f);
}

}  // namespace nnr
