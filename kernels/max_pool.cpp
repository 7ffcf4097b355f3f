// The CPU reference of 2-D max pooling (kernels/max_pool.h). Planes are independent: both
// directions split them across the loop threads.
#include "kernels/max_pool.h"

#include <cstring>

#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

// Planes whose input is this many floats or more are worth a loop thread's share.
constexpr int64_t kParallelFloats = 65536;

void pool_plane(const float* plane, const PoolShape& s, int64_t base, float* o, int64_t* argmax) {
  const int64_t w = s.width, ho = s.out_height(), wo = s.out_width();
  for (int64_t i = 0; i < ho; ++i)
    for (int64_t j = 0; j < wo; ++j) {
      int64_t best = (i * s.stride) * w + j * s.stride;
      for (int64_t di = 0; di < s.window; ++di)
        for (int64_t dj = 0; dj < s.window; ++dj) {
          const int64_t idx = (i * s.stride + di) * w + (j * s.stride + dj);
          // Strict '>' keeps the first maximum, and a NaN never wins: same as a plain scan.
          if (plane[idx] > plane[best]) best = idx;
        }
      o[i * wo + j] = plane[best];
      argmax[i * wo + j] = base + best;
    }
}

// 2x2 windows at stride 2 (every pooling layer of nnr's model specs): the same first-maximum rule
// as pool_plane, written as selects the compiler vectorises across the row's outputs; the
// generic scan's data-dependent branch mispredicts on about every other window of real data.
void pool_plane_2x2(const float* plane, const PoolShape& s, int64_t base, float* o, int64_t* argmax) {
  const int64_t w = s.width, ho = s.out_height(), wo = s.out_width();
  for (int64_t i = 0; i < ho; ++i) {
    const float* r0 = plane + 2 * i * w;
    const float* r1 = r0 + w;
    float* out = o + i * wo;
    int64_t* where = argmax + i * wo;
    const int64_t first = base + 2 * i * w;
#pragma omp simd
    for (int64_t j = 0; j < wo; ++j) {
      float best = r0[2 * j];
      int64_t at = 2 * j;
      const float b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
      at = b > best ? 2 * j + 1 : at;
      best = b > best ? b : best;
      at = c > best ? w + 2 * j : at;
      best = c > best ? c : best;
      at = d > best ? w + 2 * j + 1 : at;
      best = d > best ? d : best;
      out[j] = best;
      where[j] = first + at;
    }
  }
}

}  // namespace

void max_pool2d_forward_cpu(const float* in, const PoolShape& s, float* o, int64_t* argmax) {
  const int64_t plane_in = s.height * s.width, plane_out = s.out_height() * s.out_width();
  parallel_for(s.planes, s.planes * plane_in >= kParallelFloats, [&](int64_t p) {
    if (s.window == 2 && s.stride == 2)
      pool_plane_2x2(in + p * plane_in, s, p * plane_in, o + p * plane_out, argmax + p * plane_out);
    else
      pool_plane(in + p * plane_in, s, p * plane_in, o + p * plane_out, argmax + p * plane_out);
  });
}

void max_pool2d_backward_cpu(const float* g, const int64_t* argmax, const PoolShape& s, float* d,
                             const float* relu_y) {
  const int64_t plane_in = s.height * s.width, plane_out = s.out_height() * s.out_width();
  // A plane's outputs scatter into that plane only: zeroing and scattering one plane at a time
  // keeps it in cache, and planes go to different threads without conflicts.
  parallel_for(s.planes, s.planes * plane_in >= kParallelFloats, [&](int64_t p) {
    std::memset(d + p * plane_in, 0, sizeof(float) * static_cast<size_t>(plane_in));
    const int64_t first = p * plane_out, last = first + plane_out;
    if (relu_y) {
      for (int64_t i = first; i < last; ++i) d[argmax[i]] += relu_y[i] > 0.0f ? g[i] : 0.0f;
    } else {
      for (int64_t i = first; i < last; ++i) d[argmax[i]] += g[i];
    }
  });
}

}  // namespace nnr::kernels
