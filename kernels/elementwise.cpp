// The CPU reference of the elementwise ops (kernels/elementwise.h).
#include "kernels/elementwise.h"

#include <cstddef>
#include <vector>

#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

// Below this many elements a loop runs on one thread: handing shares to the pool's threads costs
// more than it saves.
constexpr int64_t kParallelElements = 1 << 18;

// body(begin, end) on [0, n): one span per thread of the loop when n is large, else the whole.
template <typename Body>
void for_spans(int64_t n, Body body) {
  if (n > kParallelElements)
    parallel_ranges(n, [&](int, int64_t begin, int64_t end) { body(begin, end); });
  else
    body(int64_t{0}, n);
}

}  // namespace

void add_bias_cpu(float* p, const float* b, int64_t outer, int64_t channels, int64_t inner) {
  parallel_for(outer, outer * channels * inner > 65536, [&](int64_t n) {
    if (inner == 1) {
      // [outer, channels] (a Linear's output): the bias runs along the row, one vector add.
      float* __restrict row = p + n * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) row[c] += b[c];
      return;
    }
    for (int64_t c = 0; c < channels; ++c) {
      float* row = p + (n * channels + c) * inner;
      const float bc = b[c];
      for (int64_t i = 0; i < inner; ++i) row[i] += bc;
    }
  });
}

namespace {

// The channel sums of bias_backward_cpu for the channels rows[k] (k itself when rows is null),
// into db[rows[k]]: overwritten or, when `accumulate`, added to.
void channel_sums(const float* g, float* out, int64_t outer, int64_t channels, int64_t inner, const int64_t* rows,
                  int64_t count, bool accumulate) {
  // Sum in double per channel: a plain float sum over tens of thousands of terms loses digits.
  // Threads take whole channels, so a channel's sum does not depend on the thread count.
  const bool parallel = outer * count * inner > kParallelElements && count > 1;
  if (inner == 1) {
    // [outer, channels]: rows of channels side by side; sum down the columns.
    std::vector<double> sums(static_cast<size_t>(count), 0.0);
    for (int64_t n = 0; n < outer; ++n) {
      const float* row = g + n * channels;
      if (rows) {
        for (int64_t k = 0; k < count; ++k) sums[static_cast<size_t>(k)] += row[rows[k]];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < count; ++c) sums[static_cast<size_t>(c)] += row[c];
      }
    }
    for (int64_t k = 0; k < count; ++k) {
      float& o = out[rows ? rows[k] : k];
      o = (accumulate ? o : 0.0f) + static_cast<float>(sums[static_cast<size_t>(k)]);
    }
    return;
  }
  parallel_for(count, parallel, [&](int64_t k) {
    const int64_t c = rows ? rows[k] : k;
    double sum = 0.0;
    for (int64_t n = 0; n < outer; ++n) {
      const float* row = g + (n * channels + c) * inner;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < inner; ++i) s += row[i];
      sum += s;
    }
    out[c] = (accumulate ? out[c] : 0.0f) + static_cast<float>(sum);
  });
}

}  // namespace

void bias_backward_cpu(const float* g, float* out, int64_t outer, int64_t channels, int64_t inner, bool accumulate) {
  channel_sums(g, out, outer, channels, inner, nullptr, channels, accumulate);
}

void bias_backward_rows_cpu(const float* g, float* out, int64_t outer, int64_t channels, int64_t inner,
                            const int64_t* rows, int64_t count) {
  channel_sums(g, out, outer, channels, inner, rows, count, /*accumulate=*/true);
}

void relu_forward_cpu(const float* a, float* b, int64_t n) {
  for_spans(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) b[i] = a[i] > 0.0f ? a[i] : 0.0f;
  });
}

void relu_backward_cpu(const float* out, const float* g, float* d, int64_t n) {
  for_spans(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) d[i] = out[i] > 0.0f ? g[i] : 0.0f;
  });
}

void dropout_backward_cpu(const float* m, const float* g, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = g[i] * m[i];
}

}  // namespace nnr::kernels
