// The CPU reference of softmax cross-entropy (kernels/softmax_cross_entropy.h).
#include "kernels/softmax_cross_entropy.h"

#include <algorithm>
#include <cmath>

namespace nnr::kernels {
namespace {

// Softmax of one row; returns log(sum(exp(x - max))) + max, the row's log-sum-exp.
double softmax_row(const float* x, float* p, int64_t k) {
  float mx = x[0];
  for (int64_t j = 1; j < k; ++j) mx = std::max(mx, x[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    p[j] = std::exp(x[j] - mx);
    sum += p[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < k; ++j) p[j] *= inv;
  return std::log(sum) + mx;
}

}  // namespace

double softmax_cross_entropy_forward_cpu(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                         float* probs) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = logits + i * k;
    const double lse = softmax_row(x, probs + i * k, k);
    total += lse - x[labels[i]];
  }
  return n ? total / static_cast<double>(n) : 0.0;
}

void softmax_cross_entropy_backward_cpu(const float* p, const int32_t* labels, int64_t n, int64_t k, float scale,
                                        float* d) {
  for (int64_t i = 0; i < n * k; ++i) d[i] = p[i] * scale;
  for (int64_t i = 0; i < n; ++i) d[i * k + labels[i]] -= scale;
}

void softmax_cpu(const float* logits, int64_t n, int64_t k, float* probs) {
  for (int64_t i = 0; i < n; ++i) softmax_row(logits + i * k, probs + i * k, k);
}

}  // namespace nnr::kernels
