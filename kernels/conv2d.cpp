// The CPU reference of 2-D convolution (kernels/conv2d.h): im2col per sample and one GEMM,
// parallel over samples.
#include "kernels/conv2d.h"

#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels/gemm.h"

namespace nnr::kernels {
namespace {

struct Dims {
  int64_t n, c, h, w, o, kh, kw, ho, wo;
  int64_t patch() const { return c * kh * kw; }
  int64_t pixels() const { return ho * wo; }
};

Dims dims_of(const ConvShape& s) { return {s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.out_h(), s.out_w()}; }

// cols[(c, i, j), (oy, ox)] = x[c, oy * s + i - p, ox * s + j - p] (0 outside).
void im2col(const float* x, const Dims& d, const ConvShape& g, float* cols) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        float* row = cols + ((c * d.kh + i) * d.kw + j) * d.pixels();
        for (int64_t oy = 0; oy < d.ho; ++oy) {
          const int64_t iy = oy * g.stride + i - g.padding;
          float* out = row + oy * d.wo;
          if (iy < 0 || iy >= d.h) {
            std::memset(out, 0, sizeof(float) * static_cast<size_t>(d.wo));
            continue;
          }
          const float* in = x + (c * d.h + iy) * d.w;
          for (int64_t ox = 0; ox < d.wo; ++ox) {
            const int64_t ix = ox * g.stride + j - g.padding;
            out[ox] = (ix >= 0 && ix < d.w) ? in[ix] : 0.0f;
          }
        }
      }
}

// The adjoint of im2col: x[c, iy, ix] += cols[...]; x must be zeroed first.
void col2im(const float* cols, const Dims& d, const ConvShape& g, float* x) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        const float* row = cols + ((c * d.kh + i) * d.kw + j) * d.pixels();
        for (int64_t oy = 0; oy < d.ho; ++oy) {
          const int64_t iy = oy * g.stride + i - g.padding;
          if (iy < 0 || iy >= d.h) continue;
          float* out = x + (c * d.h + iy) * d.w;
          const float* in = row + oy * d.wo;
          for (int64_t ox = 0; ox < d.wo; ++ox) {
            const int64_t ix = ox * g.stride + j - g.padding;
            if (ix >= 0 && ix < d.w) out[ix] += in[ox];
          }
        }
      }
}

}  // namespace

void conv2d_forward_cpu(const float* x, const float* w, const float* bias, const ConvShape& g, float* y) {
  const Dims d = dims_of(g);
#pragma omp parallel if (d.n > 1)
  {
    std::vector<float> cols(static_cast<size_t>(d.patch() * d.pixels()));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.n; ++n) {
      im2col(x + n * d.c * d.h * d.w, d, g, cols.data());
      float* out = y + n * d.o * d.pixels();
      gemm_cpu(w, false, cols.data(), false, out, d.o, d.pixels(), d.patch(), 1.0f, 0.0f);
      if (bias)
        for (int64_t o = 0; o < d.o; ++o) {
          const float b = bias[o];
          for (int64_t p = 0; p < d.pixels(); ++p) out[o * d.pixels() + p] += b;
        }
    }
  }
}

void conv2d_backward_data_cpu(const float* dy, const float* w, const ConvShape& g, float* dx) {
  const Dims d = dims_of(g);
#pragma omp parallel if (d.n > 1)
  {
    std::vector<float> cols(static_cast<size_t>(d.patch() * d.pixels()));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.n; ++n) {
      gemm_cpu(w, true, dy + n * d.o * d.pixels(), false, cols.data(), d.patch(), d.pixels(), d.o,
               1.0f, 0.0f);
      float* out = dx + n * d.c * d.h * d.w;
      std::memset(out, 0, sizeof(float) * static_cast<size_t>(d.c * d.h * d.w));
      col2im(cols.data(), d, g, out);
    }
  }
}

void conv2d_backward_filter_cpu(const float* x, const float* dy, const ConvShape& g, const int64_t* rows,
                                int64_t open_rows, float* dw) {
  const Dims d = dims_of(g);
  const int64_t open = rows ? open_rows : d.o;
  if (open == 0 || d.n == 0) return;
  const int64_t patch = d.patch(), pixels = d.pixels();
  const int threads = (d.n > 1) ? omp_get_max_threads() : 1;
  // Each thread sums its samples into its own [open, patch] buffer; the buffers are added at the end.
  std::vector<std::vector<float>> partial(static_cast<size_t>(threads),
                                          std::vector<float>(static_cast<size_t>(open * patch), 0.0f));
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> cols(static_cast<size_t>(patch * pixels));
    std::vector<float> dy_open(rows ? static_cast<size_t>(open * pixels) : 0);
    float* acc = partial[static_cast<size_t>(omp_get_thread_num())].data();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.n; ++n) {
      im2col(x + n * d.c * d.h * d.w, d, g, cols.data());
      const float* grad = dy + n * d.o * pixels;
      if (rows) {
        for (int64_t r = 0; r < open; ++r)
          std::memcpy(dy_open.data() + r * pixels, grad + rows[r] * pixels,
                      sizeof(float) * static_cast<size_t>(pixels));
        grad = dy_open.data();
      }
      gemm_cpu(grad, false, cols.data(), true, acc, open, patch, pixels, 1.0f, 1.0f);
    }
  }
  float* out = dw;
  for (const auto& part : partial)
    for (int64_t r = 0; r < open; ++r) {
      float* dst = out + (rows ? rows[r] : r) * patch;
      const float* src = part.data() + r * patch;
      for (int64_t k = 0; k < patch; ++k) dst[k] += src[k];
    }
}

}  // namespace nnr::kernels
