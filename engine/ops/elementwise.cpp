#include "engine/ops/elementwise.h"

#include "engine/core/backend.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"

namespace nnr {
namespace {

void require_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.shape() != b.shape())
    throw InvalidArgument(std::string("[") + op + "] shape mismatch: " + shape_to_string(a.shape()) + " vs " +
                          shape_to_string(b.shape()));
}

// [N, C, inner] view of a tensor whose channel axis is 1.
struct ChannelView {
  int64_t outer, channels, inner;
};

ChannelView channel_view(const Tensor& t, const Tensor& bias, const char* op) {
  if (t.rank() < 2 || bias.rank() != 1 || bias.dim(0) != t.dim(1))
    throw InvalidArgument(std::string("[") + op + "] bias " + shape_to_string(bias.shape()) +
                          " does not match channel axis 1 of " + shape_to_string(t.shape()));
  const int64_t inner = t.dim(0) ? t.numel() / (t.dim(0) * t.dim(1)) : 0;
  return {t.dim(0), t.dim(1), inner};
}

}  // namespace

void add_bias(Tensor& y, const Tensor& bias) {
  require_placement(bias, y.placement(), "add_bias", "bias");
  const ChannelView v = channel_view(y, bias, "add_bias");
  backend_of(y).add_bias(y.data(), bias.data(), v.outer, v.channels, v.inner);
}

void bias_backward(const Tensor& dy, Tensor& db, bool accumulate) {
  require_placement(db, dy.placement(), "bias_backward", "db");
  const ChannelView v = channel_view(dy, db, "bias_backward");
  backend_of(dy).bias_backward(dy.data(), db.data(), v.outer, v.channels, v.inner, accumulate);
}

void relu_forward(const Tensor& x, Tensor& y) {
  require_placement(y, x.placement(), "relu", "y");
  require_same_shape(x, y, "relu");
  backend_of(x).relu_forward(x.data(), y.data(), x.numel());
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  require_placement(dy, y.placement(), "relu_backward", "dy");
  require_placement(dx, y.placement(), "relu_backward", "dx");
  require_same_shape(y, dy, "relu_backward");
  require_same_shape(y, dx, "relu_backward");
  backend_of(y).relu_backward(y.data(), dy.data(), dx.data(), y.numel());
}

void dropout_forward(const Tensor& x, float rate, Rng& rng, Tensor& y, Tensor& mask) {
  if (!(rate >= 0.0f && rate < 1.0f))
    throw InvalidArgument("[dropout] rate must be in [0, 1), got " + std::to_string(rate));
  require_placement(y, x.placement(), "dropout", "y");
  require_placement(mask, x.placement(), "dropout", "mask");
  require_same_shape(x, y, "dropout");
  require_same_shape(x, mask, "dropout");
  // The CPU draws one uniform per element from `rng`; CUDA takes one fresh seed per call from it (the
  // device mask is a counter-based hash of (seed, i): reproducible from the seed, though not equal to
  // the CPU's masks).
  backend_of(x).dropout_forward(x.data(), rate, rng, y.data(), mask.data(), x.numel());
}

void dropout_backward(const Tensor& mask, const Tensor& dy, Tensor& dx) {
  require_placement(dy, mask.placement(), "dropout_backward", "dy");
  require_placement(dx, mask.placement(), "dropout_backward", "dx");
  require_same_shape(mask, dy, "dropout_backward");
  require_same_shape(mask, dx, "dropout_backward");
  backend_of(mask).dropout_backward(mask.data(), dy.data(), dx.data(), mask.numel());
}

}  // namespace nnr
