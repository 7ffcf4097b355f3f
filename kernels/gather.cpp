// The CPU reference of gather / scatter of rows and channels (kernels/gather.h). A Linear's
// channels are single columns (inner == 1): copied run by run where the indices come in runs of
// consecutive values (blocks of neurons), else element by element without an inner loop per
// element; the generic loops made a column gather several times slower than the GEMM it feeds.
#include "kernels/gather.h"

#include <cstring>
#include <vector>

#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

// Above this many copied elements the outer loop is split across threads: below it a copy takes
// tens of microseconds, about what waking the other threads costs on a busy machine.
constexpr int64_t kParallelElements = int64_t{1} << 18;

// Runs of consecutive indices, as [first position in `rows`, length]; empty when they are too
// short (under 4 on average) to copy faster than element by element. Kept per thread, so no
// call allocates once it has grown.
const std::vector<std::pair<int64_t, int64_t>>& long_runs(const int64_t* rows, int64_t count) {
  thread_local std::vector<std::pair<int64_t, int64_t>> runs;
  runs.clear();
  for (int64_t r = 0; r < count; ++r) {
    if (r > 0 && rows[r] == rows[r - 1] + 1)
      ++runs.back().second;
    else
      runs.emplace_back(r, 1);
  }
  if (static_cast<int64_t>(runs.size()) * 4 > count) runs.clear();
  return runs;
}

}  // namespace

void gather_channels_cpu(const float* s, int64_t outer, int64_t channels, int64_t inner, const int64_t* rows,
                         int64_t count, float* d) {
  if (inner == 1) {
    const auto& runs = long_runs(rows, count);
    if (!runs.empty()) {
      parallel_for(outer, outer * count > kParallelElements, [&](int64_t o) {
        for (const auto& [at, length] : runs)
          std::memcpy(d + o * count + at, s + o * channels + rows[at], sizeof(float) * static_cast<size_t>(length));
      });
      return;
    }
    parallel_for(outer, outer * count > kParallelElements, [&](int64_t o) {
      const float* __restrict from = s + o * channels;
      float* __restrict to = d + o * count;
#pragma omp simd
      for (int64_t r = 0; r < count; ++r) to[r] = from[rows[r]];
    });
    return;
  }
  parallel_for(outer, outer * count * inner > kParallelElements, [&](int64_t o) {
    for (int64_t r = 0; r < count; ++r) {
      const float* from = s + (o * channels + rows[r]) * inner;
      float* to = d + (o * count + r) * inner;
      for (int64_t p = 0; p < inner; ++p) to[p] = from[p];
    }
  });
}

void scatter_channels_cpu(const float* s, int64_t outer, int64_t count, int64_t inner, const int64_t* rows,
                          int64_t channels, float* d) {
  if (inner == 1) {
    const auto& runs = long_runs(rows, count);
    if (!runs.empty()) {
      parallel_for(outer, outer * count > kParallelElements, [&](int64_t o) {
        for (const auto& [at, length] : runs)
          std::memcpy(d + o * channels + rows[at], s + o * count + at, sizeof(float) * static_cast<size_t>(length));
      });
      return;
    }
    parallel_for(outer, outer * count > kParallelElements, [&](int64_t o) {
      const float* __restrict from = s + o * count;
      float* __restrict to = d + o * channels;
      // Distinct indices: no two lanes store to the same entry.
#pragma omp simd
      for (int64_t r = 0; r < count; ++r) to[rows[r]] = from[r];
    });
    return;
  }
  parallel_for(outer, outer * count * inner > kParallelElements, [&](int64_t o) {
    for (int64_t r = 0; r < count; ++r) {
      const float* from = s + (o * count + r) * inner;
      float* to = d + (o * channels + rows[r]) * inner;
      for (int64_t p = 0; p < inner; ++p) to[p] = from[p];
    }
  });
}

void scatter_add_rows_cpu(const float* s, int64_t count, int64_t row_length, const int64_t* rows, float* d) {
  parallel_for(count, count * row_length > kParallelElements, [&](int64_t r) {
    float* to = d + rows[r] * row_length;
    const float* from = s + r * row_length;
    for (int64_t k = 0; k < row_length; ++k) to[k] += from[k];
  });
}

}  // namespace nnr::kernels
