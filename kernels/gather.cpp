// The CPU reference of gather / scatter-add of rows (kernels/gather.h).
#include "kernels/gather.h"

namespace nnr::kernels {

void gather_channels_cpu(const float* s, int64_t outer, int64_t channels, int64_t inner, const int64_t* rows,
                         int64_t count, float* d) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < count; ++r) {
      const float* from = s + (o * channels + rows[r]) * inner;
      float* to = d + (o * count + r) * inner;
      for (int64_t p = 0; p < inner; ++p) to[p] = from[p];
    }
}

void scatter_add_rows_cpu(const float* s, int64_t count, int64_t row_length, const int64_t* rows, float* d) {
  for (int64_t r = 0; r < count; ++r) {
    float* to = d + rows[r] * row_length;
    const float* from = s + r * row_length;
    for (int64_t k = 0; k < row_length; ++k) to[k] += from[k];
  }
}

}  // namespace nnr::kernels
