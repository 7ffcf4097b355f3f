#pragma once
// How the CPU convolutions (kernels/conv2d.cpp, kernels/conv2d_winograd.cpp) cut a batch into
// chunks of samples, one GEMM (or one set of GEMMs) per chunk, and the per-thread scratch each
// chunk works in. Internal to kernels/.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/thread_pool.h"

namespace nnr::kernels::conv_detail {

// Floats of the per-thread buffers of one chunk: half of a 2 MiB L2, so the GEMM's packed panels
// keep the other half.
constexpr int64_t kChunkFloats = int64_t{1} << 18;

// A thread's scratch of at least n floats for buffer `slot` (0 to 3), kept for the thread's later
// calls: the pool's threads persist, so after the first step a convolution allocates (and
// zero-fills) nothing. Contents are stale: callers overwrite what they read.
inline float* thread_scratch(int slot, size_t n) {
  thread_local std::vector<float> buffers[4];
  std::vector<float>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// How the batch is cut: `size` samples per chunk, `count` chunks, `threads` threads taking them.
struct Chunks {
  int64_t size, count;
  int threads;
};

// samples_per_gemm > 0 fixes the chunk; 0 sizes it so a chunk's buffers (per_sample_floats a
// sample) fit kChunkFloats, with at least one chunk per thread when the batch allows.
inline Chunks chunks_of(int64_t samples, int64_t per_sample_floats, int64_t samples_per_gemm) {
  const int threads = in_parallel_loop() ? 1 : std::max(1, loop_threads());
  int64_t size = samples_per_gemm;
  if (size <= 0) {
    size = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, per_sample_floats));
    size = std::min(size, (samples + threads - 1) / threads);
  }
  size = std::clamp<int64_t>(size, 1, std::max<int64_t>(1, samples));
  const int64_t count = (samples + size - 1) / size;
  return {size, count, static_cast<int>(std::min<int64_t>(threads, count))};
}

}  // namespace nnr::kernels::conv_detail
