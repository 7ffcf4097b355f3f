#include "engine/ops/conv2d.h"

#include <omp.h>

#include <cstring>

#include "engine/core/context.h"
#include "engine/core/error.h"
#ifdef NNR_WITH_CUDNN
#include "kernels/dnn.h"
#include "kernels/elementwise.h"
#endif
#include "engine/ops/gemm.h"

namespace nnr {
namespace {

struct Dims {
  int64_t n, c, h, w, o, kh, kw, ho, wo;
  int64_t patch() const { return c * kh * kw; }
  int64_t pixels() const { return ho * wo; }
};

Dims dims_of(const Shape& x, const Shape& w, Conv2dGeometry g) {
  const Shape y = conv2d_output_shape(x, w, g);
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3], y[2], y[3]};
}

// cols[(c, i, j), (oy, ox)] = x[c, oy * s + i - p, ox * s + j - p] (0 outside).
void im2col(const float* x, const Dims& d, Conv2dGeometry g, float* cols) {
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
void col2im(const float* cols, const Dims& d, Conv2dGeometry g, float* x) {
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

Shape conv2d_output_shape(const Shape& x, const Shape& w, Conv2dGeometry g) {
  if (x.size() != 4 || w.size() != 4)
    throw InvalidArgument("[conv2d] expected [N, C, H, W] input and [O, C, KH, KW] weight, got " +
                          shape_to_string(x) + " and " + shape_to_string(w));
  if (x[1] != w[1])
    throw InvalidArgument("[conv2d] input has " + std::to_string(x[1]) + " channels, weight expects " +
                          std::to_string(w[1]));
  if (g.stride < 1 || g.padding < 0) throw InvalidArgument("[conv2d] stride must be >= 1 and padding >= 0");
  const int64_t hp = x[2] + 2 * g.padding, wp = x[3] + 2 * g.padding;
  if (hp < w[2] || wp < w[3])
    throw InvalidArgument("[conv2d] kernel " + std::to_string(w[2]) + "x" + std::to_string(w[3]) +
                          " larger than padded input " + std::to_string(hp) + "x" + std::to_string(wp));
  return {x[0], w[0], (hp - w[2]) / g.stride + 1, (wp - w[3]) / g.stride + 1};
}

#ifdef NNR_WITH_CUDNN
namespace {
kernels::ConvShape conv_shape_of(const Shape& x, const Shape& w, Conv2dGeometry g) {
  kernels::ConvShape s;
  s.n = x[0], s.c = x[1], s.h = x[2], s.w = x[3];
  s.o = w[0], s.kh = w[2], s.kw = w[3];
  s.stride = g.stride, s.padding = g.padding;
  return s;
}
}  // namespace
#endif

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Conv2dGeometry g, Tensor& y) {
  require_placement(w, x.placement(), "conv2d", "weight");
  require_placement(y, x.placement(), "conv2d", "output");
  if (bias) require_placement(*bias, x.placement(), "conv2d", "bias");
  const Dims d = dims_of(x.shape(), w.shape(), g);
  require_shape(y, conv2d_output_shape(x.shape(), w.shape(), g), "conv2d", "output");
  if (bias) require_shape(*bias, {d.o}, "conv2d", "bias");
  if (x.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDNN
    Context& ctx = *x.context();
    if (y.numel() == 0) return;
    ctx.dnn().conv2d_forward(x.data(), w.data(), conv_shape_of(x.shape(), w.shape(), g), y.data());
    if (bias) kernels::add_bias(y.data(), bias->data(), y.dim(0), y.dim(1), y.dim(2) * y.dim(3), ctx.stream());
    return;
#else
    throw_not_implemented_on_cuda("conv2d (built without cuDNN)");
#endif
  }
#pragma omp parallel if (d.n > 1)
  {
    std::vector<float> cols(static_cast<size_t>(d.patch() * d.pixels()));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.n; ++n) {
      im2col(x.data() + n * d.c * d.h * d.w, d, g, cols.data());
      float* out = y.data() + n * d.o * d.pixels();
      gemm_cpu(w.data(), false, cols.data(), false, out, d.o, d.pixels(), d.patch(), 1.0f, 0.0f);
      if (bias)
        for (int64_t o = 0; o < d.o; ++o) {
          const float b = bias->data()[o];
          for (int64_t p = 0; p < d.pixels(); ++p) out[o * d.pixels() + p] += b;
        }
    }
  }
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, Conv2dGeometry g, Tensor& dx) {
  require_placement(w, dy.placement(), "conv2d_backward_data", "weight");
  require_placement(dx, dy.placement(), "conv2d_backward_data", "dx");
  const Dims d = dims_of(dx.shape(), w.shape(), g);
  require_shape(dy, conv2d_output_shape(dx.shape(), w.shape(), g), "conv2d_backward_data", "output gradient");
  if (dy.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDNN
    if (dx.numel() == 0) return;
    if (dy.numel() == 0) {
      dx.zero();
      return;
    }
    dy.context()->dnn().conv2d_backward_data(dy.data(), w.data(), conv_shape_of(dx.shape(), w.shape(), g), dx.data());
    return;
#else
    throw_not_implemented_on_cuda("conv2d_backward_data (built without cuDNN)");
#endif
  }
#pragma omp parallel if (d.n > 1)
  {
    std::vector<float> cols(static_cast<size_t>(d.patch() * d.pixels()));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < d.n; ++n) {
      gemm_cpu(w.data(), true, dy.data() + n * d.o * d.pixels(), false, cols.data(), d.patch(), d.pixels(), d.o,
               1.0f, 0.0f);
      float* out = dx.data() + n * d.c * d.h * d.w;
      std::memset(out, 0, sizeof(float) * static_cast<size_t>(d.c * d.h * d.w));
      col2im(cols.data(), d, g, out);
    }
  }
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Conv2dGeometry g, const std::vector<int64_t>* rows,
                            Tensor& dw, RowIndex* index) {
  require_placement(dy, x.placement(), "conv2d_backward_filter", "dy");
  require_placement(dw, x.placement(), "conv2d_backward_filter", "dw");
  const Dims d = dims_of(x.shape(), dw.shape(), g);
  require_shape(dy, conv2d_output_shape(x.shape(), dw.shape(), g), "conv2d_backward_filter", "output gradient");
  if (x.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDNN
    if (dy.numel() == 0 || dw.numel() == 0) return;
    if (!rows) {
      x.context()->dnn().conv2d_backward_filter(x.data(), dy.data(), conv_shape_of(x.shape(), dw.shape(), g),
                                                dw.data(), /*accumulate=*/true);
      return;
    }
    // Selected filters: gather their dy planes, one cuDNN call for the compact [open, C, K, K]
    // gradient, and add it into the open rows of dw.
    const int64_t open = static_cast<int64_t>(rows->size());
    if (open == 0) return;
    RowIndex local;
    const int64_t* device_rows = (index ? *index : local).on(x.placement(), *rows);
    Tensor dy_open = Tensor::empty({d.n, open, dy.dim(2), dy.dim(3)}, x.placement());
    gather_channels(dy, device_rows, open, dy_open);
    Tensor dw_open = Tensor::empty({open, d.c, dw.dim(2), dw.dim(3)}, x.placement());
    x.context()->dnn().conv2d_backward_filter(x.data(), dy_open.data(), conv_shape_of(x.shape(), dw_open.shape(), g),
                                              dw_open.data(), /*accumulate=*/false);
    scatter_add_rows(dw_open, device_rows, dw);
    return;
#else
    (void)index;
    throw_not_implemented_on_cuda("conv2d_backward_filter (built without cuDNN)");
#endif
  }
  const int64_t open = rows ? static_cast<int64_t>(rows->size()) : d.o;
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
      im2col(x.data() + n * d.c * d.h * d.w, d, g, cols.data());
      const float* grad = dy.data() + n * d.o * pixels;
      if (rows) {
        for (int64_t r = 0; r < open; ++r)
          std::memcpy(dy_open.data() + r * pixels, grad + (*rows)[static_cast<size_t>(r)] * pixels,
                      sizeof(float) * static_cast<size_t>(pixels));
        grad = dy_open.data();
      }
      gemm_cpu(grad, false, cols.data(), true, acc, open, patch, pixels, 1.0f, 1.0f);
    }
  }
  float* out = dw.data();
  for (const auto& part : partial)
    for (int64_t r = 0; r < open; ++r) {
      float* dst = out + (rows ? (*rows)[static_cast<size_t>(r)] : r) * patch;
      const float* src = part.data() + r * patch;
      for (int64_t k = 0; k < patch; ++k) dst[k] += src[k];
    }
}

}  // namespace nnr
