// The CPU reference of 2-D max pooling (kernels/max_pool.h).
#include "kernels/max_pool.h"

#include "kernels/thread_pool.h"

namespace nnr::kernels {

void max_pool2d_forward_cpu(const float* in, const PoolShape& s, float* o, int64_t* argmax) {
  const int64_t planes = s.planes, h = s.height, w = s.width, ho = s.out_height(), wo = s.out_width();
  const int64_t window = s.window, stride = s.stride;
  parallel_for(planes, planes * h * w > 65536, [&](int64_t p) {
    const float* plane = in + p * h * w;
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j) {
        int64_t best = (i * stride) * w + j * stride;
        for (int64_t di = 0; di < window; ++di)
          for (int64_t dj = 0; dj < window; ++dj) {
            const int64_t idx = (i * stride + di) * w + (j * stride + dj);
            // Strict '>' keeps the first maximum, and a NaN never wins: same as a plain scan.
            if (plane[idx] > plane[best]) best = idx;
          }
        const int64_t out_idx = (p * ho + i) * wo + j;
        o[out_idx] = plane[best];
        argmax[out_idx] = p * h * w + best;
      }
  });
}

void max_pool2d_backward_cpu(const float* g, const int64_t* argmax, int64_t count, float* d, int64_t dx_numel) {
  for (int64_t i = 0; i < dx_numel; ++i) d[i] = 0.0f;
  for (int64_t i = 0; i < count; ++i) d[argmax[i]] += g[i];
}

}  // namespace nnr::kernels
