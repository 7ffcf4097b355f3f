// Winograd F(2x2, 3x3) on the CPU (kernels/conv2d_winograd.h). With the 4x4 transforms
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1],
// a 2x2 output tile y of a 4x4 input patch d and a 3x3 filter g is A^T [(G g G^T) ⊙ (B^T d B)] A,
// exactly the cross-correlation in exact arithmetic. Summed over input channels, each of the 16
// points ξ of the 4x4 product is a GEMM: M[ξ] (tiles x O) = V[ξ] (tiles x C) · U[ξ] (C x O).
// The filter gradient is that formula's adjoint: dU[ξ] = Σ_tiles (A dy A^T)[ξ]^T · V[ξ], then
// dg = G^T dU G. Backward-data is the forward convolution of dy with the filters rotated by 180°
// and input/output channels swapped, at padding 2 − p.
//
// The transforms work channels-last: a sample's plane is first copied to a zero-padded
// [rows, columns, channels] buffer, so that each tile's 16 points are contiguous runs over the
// channels and B^T·B, A^T·A are plain vector arithmetic across channels (no shuffles, no bounds
// checks). As the im2col path (kernels/conv2d.cpp), threads take whole chunks of samples, each with
// its own buffers and single-threaded GEMMs.
#include "kernels/conv2d_winograd.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv2d_chunks.h"
#include "kernels/gemm.h"
#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

using conv_detail::Chunks;
using conv_detail::chunks_of;
using conv_detail::thread_scratch;

constexpr int64_t kPoints = 16;  // Winograd-domain points of a 4x4 tile

// A plane of h x w read as 2x2 output tiles of an (h + 2p − 2) x (w + 2p − 2) output.
struct Plane {
  int64_t h, w, padding;
  int64_t out_h() const { return h + 2 * padding - 2; }
  int64_t out_w() const { return w + 2 * padding - 2; }
  int64_t tiles_h() const { return (out_h() + 1) / 2; }
  int64_t tiles_w() const { return (out_w() + 1) / 2; }
  int64_t tiles() const { return tiles_h() * tiles_w(); }
  // The padded input the tiles read: rows and columns 0 .. 2·tiles + 1.
  int64_t padded_h() const { return 2 * tiles_h() + 2; }
  int64_t padded_w() const { return 2 * tiles_w() + 2; }
};

// u[ξ·in·out + i·out + o] = (G g G^T)[ξ] for each input channel i and output channel o of the
// convolution it serves: forward takes g = w[o, i] as stored ([o_count, c_count, 3, 3]);
// backward-data (`flip`) runs from the o_count channels of dy to the c_count of dx with
// g = w[i, o] rotated by 180°.
void transform_filters(const float* w, int64_t o_count, int64_t c_count, bool flip, float* u) {
  const int64_t pairs = o_count * c_count;
  for (int64_t o = 0; o < o_count; ++o)
    for (int64_t c = 0; c < c_count; ++c) {
      const float* src = w + (o * c_count + c) * 9;
      float g[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) g[i][j] = flip ? src[(2 - i) * 3 + (2 - j)] : src[i * 3 + j];
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      float* dst = u + (flip ? o * c_count + c : c * o_count + o);
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        dst[(i * 4 + 0) * pairs] = t[i][0];
        dst[(i * 4 + 1) * pairs] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        dst[(i * 4 + 2) * pairs] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        dst[(i * 4 + 3) * pairs] = t[i][2];
      }
    }
}

// hwc[(r·cols + q)·n + k] = planes[k's channel][r − top, q − left] for a zero-padded
// [rows, cols, n] copy of n channels of one sample (channel k is rows[k] when rows is non-null,
// else k); entries outside the h x w plane are 0.
void to_channels_last(const float* planes, int64_t h, int64_t w, const int64_t* rows, int64_t n, int64_t top,
                      int64_t left, int64_t padded_rows, int64_t padded_cols, float* hwc) {
  std::fill(hwc, hwc + padded_rows * padded_cols * n, 0.0f);
  const int64_t y1 = std::min(h, padded_rows - top), x1 = std::min(w, padded_cols - left);
  for (int64_t k = 0; k < n; ++k) {
    const float* plane = planes + (rows ? rows[k] : k) * h * w;
    for (int64_t y = std::max<int64_t>(0, -top); y < y1; ++y) {
      const float* src = plane + y * w;
      float* dst = hwc + ((y + top) * padded_cols + left) * n + k;
      for (int64_t x = std::max<int64_t>(0, -left); x < x1; ++x) dst[x * n] = src[x];
    }
  }
}

// v[ξ·cols·n + col·n + k] = (B^T d B)[ξ] of each tile's 4x4 patch d of a padded channels-last
// sample (to_channels_last with the plane's padding), tiles from column `col0` on.
void transform_input(const float* hwc, int64_t n, const Plane& pl, int64_t cols, int64_t col0, float* v) {
  const int64_t pw = pl.padded_w(), stride = cols * n;
  for (int64_t ty = 0; ty < pl.tiles_h(); ++ty)
    for (int64_t tx = 0; tx < pl.tiles_w(); ++tx) {
      const float* d = hwc + (2 * ty * pw + 2 * tx) * n;  // d[i][j] at d + (i·pw + j)·n
      float* out = v + (col0 + ty * pl.tiles_w() + tx) * n;
      const int64_t row = pw * n;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        float t[4][4];  // B^T d
        for (int j = 0; j < 4; ++j) {
          const float d0 = d[j * n + k], d1 = d[row + j * n + k], d2 = d[2 * row + j * n + k],
                      d3 = d[3 * row + j * n + k];
          t[0][j] = d0 - d2;
          t[1][j] = d1 + d2;
          t[2][j] = d2 - d1;
          t[3][j] = d1 - d3;
        }
        for (int i = 0; i < 4; ++i) {  // (B^T d) B
          out[(i * 4 + 0) * stride + k] = t[i][0] - t[i][2];
          out[(i * 4 + 1) * stride + k] = t[i][1] + t[i][2];
          out[(i * 4 + 2) * stride + k] = t[i][2] - t[i][1];
          out[(i * 4 + 3) * stride + k] = t[i][1] - t[i][3];
        }
      }
    }
}

// y[k, oy, ox] = (A^T m A + bias[k]) of each tile, cropped to the output plane, for one sample's
// n output channels: m[ξ·cols·n + col·n + k] as the GEMMs left it, tiles from column `col0` on.
// The tiles are first written channels-last to `hwc` ([2·tiles_h, 2·tiles_w, n]), then transposed.
void transform_output(const float* m, int64_t n, const Plane& pl, int64_t cols, int64_t col0, const float* bias,
                      float* hwc, float* y) {
  const int64_t stride = cols * n, ow = 2 * pl.tiles_w(), ho = pl.out_h(), wo = pl.out_w();
  for (int64_t ty = 0; ty < pl.tiles_h(); ++ty)
    for (int64_t tx = 0; tx < pl.tiles_w(); ++tx) {
      const float* src = m + (col0 + ty * pl.tiles_w() + tx) * n;
      float* top = hwc + (2 * ty * ow + 2 * tx) * n;
      float* bottom = top + ow * n;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        float s[2][4];  // A^T m
        for (int j = 0; j < 4; ++j) {
          const float m0 = src[j * stride + k], m1 = src[(4 + j) * stride + k];
          const float m2 = src[(8 + j) * stride + k], m3 = src[(12 + j) * stride + k];
          s[0][j] = m0 + m1 + m2;
          s[1][j] = m1 - m2 - m3;
        }
        top[k] = s[0][0] + s[0][1] + s[0][2];  // (A^T m) A
        top[n + k] = s[0][1] - s[0][2] - s[0][3];
        bottom[k] = s[1][0] + s[1][1] + s[1][2];
        bottom[n + k] = s[1][1] - s[1][2] - s[1][3];
      }
    }
  for (int64_t k = 0; k < n; ++k) {
    const float add = bias ? bias[k] : 0.0f;
    float* plane = y + k * ho * wo;
    for (int64_t oy = 0; oy < ho; ++oy) {
      const float* src = hwc + oy * ow * n + k;
      float* dst = plane + oy * wo;
      for (int64_t ox = 0; ox < wo; ++ox) dst[ox] = src[ox * n] + add;
    }
  }
}

// z[ξ·cols·n + col·n + k] = (A e A^T)[ξ] of each tile's 2x2 patch e of a channels-last output
// gradient ([2·tiles_h, 2·tiles_w, n], zero past the output plane), tiles from column `col0` on.
void transform_output_gradient(const float* hwc, int64_t n, const Plane& pl, int64_t cols, int64_t col0, float* z) {
  const int64_t stride = cols * n, ow = 2 * pl.tiles_w();
  for (int64_t ty = 0; ty < pl.tiles_h(); ++ty)
    for (int64_t tx = 0; tx < pl.tiles_w(); ++tx) {
      const float* top = hwc + (2 * ty * ow + 2 * tx) * n;
      const float* bottom = top + ow * n;
      float* out = z + (col0 + ty * pl.tiles_w() + tx) * n;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        const float e[2][2] = {{top[k], top[n + k]}, {bottom[k], bottom[n + k]}};
        float t[4][2];  // A e
        for (int j = 0; j < 2; ++j) {
          t[0][j] = e[0][j];
          t[1][j] = e[0][j] + e[1][j];
          t[2][j] = e[0][j] - e[1][j];
          t[3][j] = -e[1][j];
        }
        for (int i = 0; i < 4; ++i) {  // (A e) A^T
          out[(i * 4 + 0) * stride + k] = t[i][0];
          out[(i * 4 + 1) * stride + k] = t[i][0] + t[i][1];
          out[(i * 4 + 2) * stride + k] = t[i][0] - t[i][1];
          out[(i * 4 + 3) * stride + k] = -t[i][1];
        }
      }
    }
}

// y = conv(x, g) (+ bias) for x [n, c_in, pl.h, pl.w] and filters u = transform_filters(...) as
// [16, c_in, c_out]; overwrites y [n, c_out, out_h, out_w].
void forward(const float* x, const float* u, const float* bias, int64_t n, int64_t c_in, int64_t c_out,
             const Plane& pl, float* y) {
  const int64_t tiles = pl.tiles(), image = c_in * pl.h * pl.w, out_image = c_out * pl.out_h() * pl.out_w();
  const Chunks ch = chunks_of(n, kPoints * (c_in + c_out) * tiles, 0);
  parallel_ranges(ch.count, [&](int, int64_t first, int64_t last) {
    float* v = thread_scratch(0, static_cast<size_t>(kPoints * c_in * ch.size * tiles));
    float* m = thread_scratch(1, static_cast<size_t>(kPoints * c_out * ch.size * tiles));
    float* in = thread_scratch(2, static_cast<size_t>(pl.padded_h() * pl.padded_w() * c_in));
    float* out = thread_scratch(3, static_cast<size_t>(4 * tiles * c_out));
    for (int64_t k = first; k < last; ++k) {
      const int64_t n0 = k * ch.size, samples = std::min(ch.size, n - n0), cols = samples * tiles;
      for (int64_t b = 0; b < samples; ++b) {
        to_channels_last(x + (n0 + b) * image, pl.h, pl.w, nullptr, c_in, pl.padding, pl.padding, pl.padded_h(),
                         pl.padded_w(), in);
        transform_input(in, c_in, pl, cols, b * tiles, v);
      }
      for (int64_t xi = 0; xi < kPoints; ++xi)
        gemm_cpu(v + xi * cols * c_in, false, u + xi * c_in * c_out, false, m + xi * cols * c_out, cols, c_out, c_in,
                 1.0f, 0.0f);
      for (int64_t b = 0; b < samples; ++b)
        transform_output(m, c_out, pl, cols, b * tiles, bias, out, y + (n0 + b) * out_image);
    }
  }, ch.threads);
}

void require_fit(const ConvShape& s, const char* what) {
  if (!winograd_fits(s))
    throw std::invalid_argument(std::string("[") + what +
                                "] the Winograd path needs a 3x3 kernel, stride 1 and padding 0-2");
}

}  // namespace

bool winograd_fits(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.stride == 1 && s.padding >= 0 && s.padding <= 2 && s.out_h() >= 1 &&
         s.out_w() >= 1;
}

void conv2d_forward_winograd_cpu(const float* x, const float* w, const float* bias, const ConvShape& s, float* y) {
  require_fit(s, "conv2d_forward_winograd_cpu");
  if (s.n == 0 || s.o == 0) return;
  std::vector<float> u(static_cast<size_t>(kPoints * s.o * s.c));
  transform_filters(w, s.o, s.c, false, u.data());
  forward(x, u.data(), bias, s.n, s.c, s.o, Plane{s.h, s.w, s.padding}, y);
}

void conv2d_backward_data_winograd_cpu(const float* dy, const float* w, const ConvShape& s, float* dx) {
  require_fit(s, "conv2d_backward_data_winograd_cpu");
  if (s.n == 0 || s.c == 0) return;
  std::vector<float> u(static_cast<size_t>(kPoints * s.c * s.o));
  transform_filters(w, s.o, s.c, true, u.data());
  // The "full" correlation of dy with the rotated filters: its output is h x w.
  forward(dy, u.data(), nullptr, s.n, s.o, s.c, Plane{s.out_h(), s.out_w(), 2 - s.padding}, dx);
}

void conv2d_backward_filter_winograd_cpu(const float* x, const float* dy, const ConvShape& s, const int64_t* rows,
                                         int64_t open_rows, float* dw) {
  require_fit(s, "conv2d_backward_filter_winograd_cpu");
  const int64_t open = rows ? open_rows : s.o;
  if (open == 0 || s.n == 0 || s.c == 0) return;
  const Plane pl{s.h, s.w, s.padding};
  const int64_t tiles = pl.tiles(), image = s.c * s.h * s.w, out_image = s.o * pl.out_h() * pl.out_w();
  const Chunks ch = chunks_of(s.n, kPoints * (s.c + open) * tiles, 0);
  // Each thread sums its chunks' dU into its own [16, open, c] buffer; they are added at the end.
  const int64_t du_floats = kPoints * open * s.c;
  std::vector<std::vector<float>> partial(static_cast<size_t>(ch.threads),
                                          std::vector<float>(static_cast<size_t>(du_floats), 0.0f));
  parallel_ranges(ch.count, [&](int share, int64_t first, int64_t last) {
    float* v = thread_scratch(0, static_cast<size_t>(kPoints * s.c * ch.size * tiles));
    float* z = thread_scratch(1, static_cast<size_t>(kPoints * open * ch.size * tiles));
    float* in = thread_scratch(2, static_cast<size_t>(pl.padded_h() * pl.padded_w() * s.c));
    float* grad = thread_scratch(3, static_cast<size_t>(4 * tiles * open));
    float* acc = partial[static_cast<size_t>(share)].data();
    for (int64_t k = first; k < last; ++k) {
      const int64_t n0 = k * ch.size, samples = std::min(ch.size, s.n - n0), cols = samples * tiles;
      for (int64_t b = 0; b < samples; ++b) {
        to_channels_last(x + (n0 + b) * image, s.h, s.w, nullptr, s.c, s.padding, s.padding, pl.padded_h(),
                         pl.padded_w(), in);
        transform_input(in, s.c, pl, cols, b * tiles, v);
        to_channels_last(dy + (n0 + b) * out_image, pl.out_h(), pl.out_w(), rows, open, 0, 0, 2 * pl.tiles_h(),
                         2 * pl.tiles_w(), grad);
        transform_output_gradient(grad, open, pl, cols, b * tiles, z);
      }
      for (int64_t xi = 0; xi < kPoints; ++xi)
        gemm_cpu(z + xi * cols * open, true, v + xi * cols * s.c, false, acc + xi * open * s.c, open, s.c, cols, 1.0f,
                 1.0f);
    }
  }, ch.threads);
  std::vector<float> du(static_cast<size_t>(du_floats), 0.0f);
  for (const auto& part : partial)
    for (size_t i = 0; i < du.size(); ++i) du[i] += part[i];
  // dw[r, c] += G^T dU G.
  const int64_t pairs = open * s.c;
  for (int64_t r = 0; r < open; ++r)
    for (int64_t c = 0; c < s.c; ++c) {
      const float* src = du.data() + r * s.c + c;
      float t[3][4];  // G^T dU
      for (int j = 0; j < 4; ++j) {
        const float u0 = src[(0 * 4 + j) * pairs], u1 = src[(1 * 4 + j) * pairs];
        const float u2 = src[(2 * 4 + j) * pairs], u3 = src[(3 * 4 + j) * pairs];
        t[0][j] = u0 + 0.5f * (u1 + u2);
        t[1][j] = 0.5f * (u1 - u2);
        t[2][j] = 0.5f * (u1 + u2) + u3;
      }
      float* dst = dw + ((rows ? rows[r] : r) * s.c + c) * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T dU) G
        dst[i * 3 + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
        dst[i * 3 + 1] += 0.5f * (t[i][1] - t[i][2]);
        dst[i * 3 + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
}

}  // namespace nnr::kernels
