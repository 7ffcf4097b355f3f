// The CPU reference of the fused masked updates (kernels/masked_update.h), and the step scalars
// the CUDA kernels read in a replayed step.
#include "kernels/masked_update.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

// Calls body(i) for every selected element index i in [0, n), in parallel for large ranges.
template <typename Body>
void for_each_selected(int64_t n, const MaskArgs& mask, Body body) {
  switch (mask.kind) {
    case MaskKind::All:
      parallel_for(n, n > (1 << 16), body);
      break;
    case MaskKind::Rows:
      parallel_for(mask.row_count, mask.row_count * mask.row_length > (1 << 16), [&](int64_t r) {
        const int64_t begin = mask.rows[r] * mask.row_length;
        for (int64_t i = begin; i < begin + mask.row_length; ++i) body(i);
      });
      break;
    case MaskKind::Elements:
      parallel_for(n, n > (1 << 16), [&](int64_t i) {
        if ((mask.bits[i >> 5] >> (i & 31)) & 1u) body(i);
      });
      break;
  }
}

}  // namespace

double penalty_value_cpu(const float* theta, int64_t n, const PenaltyArgs& p) {
  if (!p.want_value || !p.anchor) return 0.0;
  // One partial sum per share, added in share order: the result depends on the thread count only.
  const int threads = n > (1 << 16) ? loop_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(std::max(1, threads)), 0.0);
  parallel_ranges(n, [&](int share, int64_t begin, int64_t end) {
    double sum = 0.0;
    for (int64_t i = begin; i < end; ++i) {
      const double d = static_cast<double>(theta[i]) - p.anchor[i];
      sum += (p.omega ? p.omega[i] : 1.0) * d * d;
    }
    partial[static_cast<size_t>(share)] = sum;
  }, threads);
  double sum = 0.0;
  for (const double s : partial) sum += s;
  return p.lambda * sum;
}

namespace {

// The proximal step towards θ* and the SI path integral, shared by every optimizer.
inline float finish_update(int64_t i, float old_theta, float stepped, float g, float lr, const PenaltyArgs& p) {
  float result = stepped;
  if (p.anchor) {
    const float c = 2.0f * lr * p.lambda * (p.omega ? p.omega[i] : 1.0f);
    result = (stepped + c * p.anchor[i]) / (1.0f + c);
  }
  if (p.path_integral) p.path_integral[i] -= g * (result - old_theta);
  return result;
}

}  // namespace

// The common case (no penalty, no SI) as loops the compiler vectorises: the general path's
// per-element branches and possible aliasing keep it scalar, and on a small MLP the update was
// 8 % of a training step. A Rows mask runs the same loop on each open row (a selective step's
// update then costs its open rows only: the general path made a 25 % step's update nearly as
// slow as the dense one).
namespace {

// One contiguous span [0, n) of SGD-momentum, single-threaded.
inline void sgd_momentum_span(float* __restrict theta, const float* __restrict grad, float* __restrict velocity,
                              int64_t n, float lr, float mu, float wd) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float t = theta[i];
    const float v = mu * velocity[i] + (grad[i] + wd * t);
    velocity[i] = v;
    theta[i] = t - lr * v;
  }
}

// Adam likewise. Vectorising its sqrt needs -fno-math-errno (kernels/CMakeLists.txt: the root of
// vi >= 0 never sets errno, but with errno semantics GCC keeps a scalar branch per element); on
// the nnr train MLP, the general path was a quarter of the step.
inline void adam_span(float* __restrict theta, const float* __restrict grad, float* __restrict m, float* __restrict v,
                      int64_t n, const AdamArgs& c, float step_size, float inv_sqrt_correction2) {
  const float b1 = c.beta1, b2 = c.beta2, wd = c.weight_decay, eps = c.eps;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float t = theta[i];
    const float g = grad[i] + wd * t;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    theta[i] = t - step_size * mi / (std::sqrt(vi) * inv_sqrt_correction2 + eps);
  }
}

// Calls span(begin, length) on every selected span of an All or Rows mask: blocks of the whole
// array, or one span per open row; in parallel when the selected entries are many.
constexpr int64_t kParallelEntries = int64_t{1} << 16;
constexpr int64_t kBlock = 4096;

template <typename Span>
void for_each_span(int64_t n, const MaskArgs& mask, Span span) {
  if (mask.kind == MaskKind::All) {
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    parallel_for(blocks, n > kParallelEntries,
                 [&](int64_t b) { span(b * kBlock, std::min(kBlock, n - b * kBlock)); });
  } else {
    const int64_t len = mask.row_length;
    parallel_for(mask.row_count, mask.row_count * len > kParallelEntries,
                 [&](int64_t r) { span(mask.rows[r] * len, len); });
  }
}

}  // namespace

double sgd_update_cpu(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& c,
                      const MaskArgs& mask, const PenaltyArgs& penalty) {
  const double value = penalty_value_cpu(theta, n, penalty);
  const bool momentum = c.momentum != 0.0f;
  if (mask.kind != MaskKind::Elements && !penalty.anchor && !penalty.path_integral && momentum && !c.nesterov) {
    const float lr = c.lr, mu = c.momentum, wd = c.weight_decay;
    for_each_span(n, mask, [&](int64_t begin, int64_t length) {
      sgd_momentum_span(theta + begin, grad + begin, velocity + begin, length, lr, mu, wd);
    });
    return value;
  }
  for_each_selected(n, mask, [&](int64_t i) {
    const float t = theta[i];
    const float g = grad[i] + c.weight_decay * t;
    float direction = g;
    if (momentum) {
      const float v = c.momentum * velocity[i] + g;
      velocity[i] = v;
      direction = c.nesterov ? g + c.momentum * v : v;
    }
    theta[i] = finish_update(i, t, t - c.lr * direction, grad[i], c.lr, penalty);
  });
  return value;
}

double adam_update_cpu(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                       const AdamArgs& c, const MaskArgs& mask, const PenaltyArgs& penalty) {
  const double value = penalty_value_cpu(theta, n, penalty);
  const float correction1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta1), static_cast<double>(step)));
  const float correction2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta2), static_cast<double>(step)));
  const float step_size = c.lr / correction1;
  const float inv_sqrt_correction2 = 1.0f / std::sqrt(correction2);
  if (mask.kind != MaskKind::Elements && !penalty.anchor && !penalty.path_integral) {
    for_each_span(n, mask, [&](int64_t begin, int64_t length) {
      adam_span(theta + begin, grad + begin, m + begin, v + begin, length, c, step_size, inv_sqrt_correction2);
    });
    return value;
  }
  for_each_selected(n, mask, [&](int64_t i) {
    const float t = theta[i];
    const float g = grad[i] + c.weight_decay * t;
    const float mi = c.beta1 * m[i] + (1.0f - c.beta1) * g;
    const float vi = c.beta2 * v[i] + (1.0f - c.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) * inv_sqrt_correction2 + c.eps;
    theta[i] = finish_update(i, t, t - step_size * mi / denom, grad[i], c.lr, penalty);
  });
  return value;
}


void step_scalars(const SgdArgs& c, float out[kStepScalarCount]) {
  out[0] = c.lr;
  out[1] = c.lr;
  out[2] = 1.0f;
}

void step_scalars(const AdamArgs& c, int64_t step, float out[kStepScalarCount]) {
  // Bias corrections on the host in double, exactly as adam_update_cpu computes them.
  const float correction1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta1), static_cast<double>(step)));
  const float correction2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta2), static_cast<double>(step)));
  out[0] = c.lr;
  out[1] = c.lr / correction1;
  out[2] = 1.0f / std::sqrt(correction2);
}

}  // namespace nnr::kernels
