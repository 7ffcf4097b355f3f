#include "engine/ops/elementwise.h"

#include "engine/core/error.h"
#include "engine/core/rng.h"

namespace nnr {
namespace {

// Below this many elements a loop runs on one thread: forking costs more than it saves, and
// an outlined OpenMP body is not vectorised as well as a plain simd loop.
constexpr int64_t kParallelElements = 1 << 18;

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
  require_cpu(y, "add_bias");
  require_cpu(bias, "add_bias");
  const ChannelView v = channel_view(y, bias, "add_bias");
  float* p = y.data();
  const float* b = bias.data();
#pragma omp parallel for schedule(static) if (v.outer * v.channels * v.inner > 65536)
  for (int64_t n = 0; n < v.outer; ++n)
    for (int64_t c = 0; c < v.channels; ++c) {
      float* row = p + (n * v.channels + c) * v.inner;
      const float bc = b[c];
      if (v.inner == 1) {
        row[0] += bc;
      } else {
        for (int64_t i = 0; i < v.inner; ++i) row[i] += bc;
      }
    }
}

void bias_backward(const Tensor& dy, Tensor& db, bool accumulate) {
  require_cpu(dy, "bias_backward");
  require_cpu(db, "bias_backward");
  const ChannelView v = channel_view(dy, db, "bias_backward");
  if (!accumulate) db.zero();
  const float* g = dy.data();
  float* out = db.data();
  // Sum in double per channel: a plain float sum over tens of thousands of terms loses digits.
  std::vector<double> sums(static_cast<size_t>(v.channels), 0.0);
  for (int64_t n = 0; n < v.outer; ++n)
    for (int64_t c = 0; c < v.channels; ++c) {
      const float* row = g + (n * v.channels + c) * v.inner;
      double s = 0.0;
      for (int64_t i = 0; i < v.inner; ++i) s += row[i];
      sums[static_cast<size_t>(c)] += s;
    }
  for (int64_t c = 0; c < v.channels; ++c) out[c] += static_cast<float>(sums[static_cast<size_t>(c)]);
}

void relu_forward(const Tensor& x, Tensor& y) {
  require_cpu(x, "relu");
  require_same_shape(x, y, "relu");
  const float* a = x.data();
  float* b = y.data();
  const int64_t n = x.numel();
  if (n > kParallelElements) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) b[i] = a[i] > 0.0f ? a[i] : 0.0f;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) b[i] = a[i] > 0.0f ? a[i] : 0.0f;
  }
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  require_cpu(y, "relu_backward");
  require_same_shape(y, dy, "relu_backward");
  require_same_shape(y, dx, "relu_backward");
  const float* out = y.data();
  const float* g = dy.data();
  float* d = dx.data();
  const int64_t n = y.numel();
  if (n > kParallelElements) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) d[i] = out[i] > 0.0f ? g[i] : 0.0f;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = out[i] > 0.0f ? g[i] : 0.0f;
  }
}

void dropout_forward(const Tensor& x, float rate, Rng& rng, Tensor& y, Tensor& mask) {
  require_cpu(x, "dropout");
  if (!(rate >= 0.0f && rate < 1.0f))
    throw InvalidArgument("[dropout] rate must be in [0, 1), got " + std::to_string(rate));
  require_same_shape(x, y, "dropout");
  require_same_shape(x, mask, "dropout");
  const float scale = 1.0f / (1.0f - rate);
  const float* a = x.data();
  float* b = y.data();
  float* m = mask.data();
  for (int64_t i = 0; i < x.numel(); ++i) {
    m[i] = rng.uniform() < rate ? 0.0f : scale;
    b[i] = a[i] * m[i];
  }
}

void dropout_backward(const Tensor& mask, const Tensor& dy, Tensor& dx) {
  require_same_shape(mask, dy, "dropout_backward");
  require_same_shape(mask, dx, "dropout_backward");
  const float* m = mask.data();
  const float* g = dy.data();
  float* d = dx.data();
  for (int64_t i = 0; i < mask.numel(); ++i) d[i] = g[i] * m[i];
}

}  // namespace nnr
