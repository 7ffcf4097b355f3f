#include "engine/ops/elementwise.h"

#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#ifdef NNR_WITH_CUDA
#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#endif

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

#ifdef NNR_WITH_CUDA
cudaStream_t stream_of(const Tensor& t) { return t.context()->stream(); }
#endif

}  // namespace

void add_bias(Tensor& y, const Tensor& bias) {
  require_placement(bias, y.placement(), "add_bias", "bias");
  const ChannelView v = channel_view(y, bias, "add_bias");
  if (y.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::add_bias(y.data(), bias.data(), v.outer, v.channels, v.inner, stream_of(y));
    return;
#else
    throw_not_implemented_on_cuda("add_bias");
#endif
  }
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
  require_placement(db, dy.placement(), "bias_backward", "db");
  const ChannelView v = channel_view(dy, db, "bias_backward");
  if (dy.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::bias_backward(dy.data(), db.data(), v.outer, v.channels, v.inner, accumulate, stream_of(dy));
    return;
#else
    throw_not_implemented_on_cuda("bias_backward");
#endif
  }
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
  require_placement(y, x.placement(), "relu", "y");
  require_same_shape(x, y, "relu");
  if (x.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::relu_forward(x.data(), y.data(), x.numel(), stream_of(x));
    return;
#else
    throw_not_implemented_on_cuda("relu");
#endif
  }
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
  require_placement(dy, y.placement(), "relu_backward", "dy");
  require_placement(dx, y.placement(), "relu_backward", "dx");
  require_same_shape(y, dy, "relu_backward");
  require_same_shape(y, dx, "relu_backward");
  if (y.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::relu_backward(y.data(), dy.data(), dx.data(), y.numel(), stream_of(y));
    return;
#else
    throw_not_implemented_on_cuda("relu_backward");
#endif
  }
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
  if (!(rate >= 0.0f && rate < 1.0f))
    throw InvalidArgument("[dropout] rate must be in [0, 1), got " + std::to_string(rate));
  require_placement(y, x.placement(), "dropout", "y");
  require_placement(mask, x.placement(), "dropout", "mask");
  require_same_shape(x, y, "dropout");
  require_same_shape(x, mask, "dropout");
  if (x.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    // One fresh seed per call from the layer's generator: the device mask is a counter-based hash
    // of (seed, i), so runs are reproducible from the seed, though not equal to the CPU's masks.
    kernels::dropout_forward(x.data(), rate, rng.next_u64(), y.data(), mask.data(), x.numel(), stream_of(x));
    return;
#else
    throw_not_implemented_on_cuda("dropout");
#endif
  }
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
  require_placement(dy, mask.placement(), "dropout_backward", "dy");
  require_placement(dx, mask.placement(), "dropout_backward", "dx");
  require_same_shape(mask, dy, "dropout_backward");
  require_same_shape(mask, dx, "dropout_backward");
  if (mask.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::dropout_backward(mask.data(), dy.data(), dx.data(), mask.numel(), stream_of(mask));
    return;
#else
    throw_not_implemented_on_cuda("dropout_backward");
#endif
  }
  const float* m = mask.data();
  const float* g = dy.data();
  float* d = dx.data();
  for (int64_t i = 0; i < mask.numel(); ++i) d[i] = g[i] * m[i];
}

}  // namespace nnr
