// The CPU reference of 2-D convolution (kernels/conv2d.h): batched im2col. A chunk of samples
// (sized so its columns stay in a core's cache) becomes one [C·KH·KW, chunk·Ho·Wo] column matrix
// and one GEMM per direction; threads take whole chunks, each with its own buffers and a
// single-threaded GEMM, so they meet only at the end of the loop. Stride-1 layers as wide as their
// input (3x3 with padding 1, ...) build and fold columns with one contiguous copy or add per
// (channel, kernel row, kernel column) instead of one per output row.
#include "kernels/conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv2d_chunks.h"
#include "kernels/conv2d_winograd.h"
#include "kernels/gemm.h"
#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

using conv_detail::chunks_of;
using conv_detail::Chunks;
using conv_detail::thread_scratch;

struct Dims {
  int64_t n, c, h, w, o, kh, kw, ho, wo;
  int64_t patch() const { return c * kh * kw; }
  int64_t pixels() const { return ho * wo; }
  int64_t image() const { return c * h * w; }
};

Dims dims_of(const ConvShape& s) { return {s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.out_h(), s.out_w()}; }

// The output columns ox whose input column ox·s + j − p lies in [0, w): [lo, hi).
void valid_columns(const Dims& d, const ConvShape& g, int64_t j, int64_t& lo, int64_t& hi) {
  const int64_t first = g.padding - j;  // ix = ox·s − first ≥ 0  ⇔  ox ≥ first / s
  lo = first <= 0 ? 0 : (first + g.stride - 1) / g.stride;
  const int64_t end = d.w + g.padding - j;  // ix < w  ⇔  ox·s < end
  hi = end <= 0 ? 0 : (end + g.stride - 1) / g.stride;
  lo = std::min(lo, d.wo);
  hi = std::clamp(hi, lo, d.wo);
}

// Copies of a few dozen floats, inlined: GCC would turn the plain loops into memcpy / memset
// calls, whose call overhead is most of the cost of a 14-float row.
#if defined(__GNUC__) && !defined(__clang__)
#define NNR_INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NNR_INLINE_LOOPS
#endif

// Stride-1 layers as wide as their input ("same" padding): a row of cols for kernel position
// (i, j) is the input plane shifted by (i − p)·w + (j − p) floats, except in the columns that fall
// in the padding, so im2col and col2im move it with one contiguous copy or add.
bool same_width(const Dims& d, const ConvShape& g) { return g.stride == 1 && d.wo == d.w; }

// For kernel row i of a same-width layer: the output rows [oy0, oy1) whose input row oy + i − p
// lies in [0, h), and the first input element they read (the start of input row oy0 + i − p).
struct ShiftedRows {
  int64_t oy0, oy1, offset;
  int64_t floats(const Dims& d) const { return (oy1 - oy0) * d.wo; }
};
ShiftedRows shifted_rows(const Dims& d, const ConvShape& g, int64_t c, int64_t i) {
  const int64_t oy0 = std::clamp<int64_t>(g.padding - i, 0, d.ho);
  const int64_t oy1 = std::clamp<int64_t>(d.h + g.padding - i, oy0, d.ho);
  return {oy0, oy1, (c * d.h + oy0 + i - g.padding) * d.w};
}

// Zeroes the columns outside [lo, hi) of `rows` consecutive output rows of wo floats.
void zero_outside(float* r, int64_t rows, int64_t wo, int64_t lo, int64_t hi) {
  for (int64_t oy = 0; oy < rows; ++oy, r += wo) {
    for (int64_t ox = 0; ox < lo; ++ox) r[ox] = 0.0f;
    for (int64_t ox = hi; ox < wo; ++ox) r[ox] = 0.0f;
  }
}

// cols[(c, i, j), (oy, ox)] = x[c, oy·s + i − p, ox·s + j − p], rows `ld` floats apart (a sample's
// block of a batched column matrix). The entries that fall in the padding are 0 and the same for
// every sample: they are written only when `write_padding` (a buffer whose layout has not changed
// keeps them).
NNR_INLINE_LOOPS void im2col(const float* x, const Dims& d, const ConvShape& g, float* cols, int64_t ld,
                             bool write_padding) {
  if (same_width(d, g)) {  // one copy per (c, i, j), then the padding columns zeroed
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.kh; ++i) {
        const ShiftedRows rows = shifted_rows(d, g, c, i);
        const int64_t n = rows.floats(d);
        for (int64_t j = 0; j < d.kw; ++j) {
          float* row = cols + ((c * d.kh + i) * d.kw + j) * ld;
          if (write_padding) {
            std::memset(row, 0, sizeof(float) * static_cast<size_t>(rows.oy0 * d.wo));
            std::memset(row + rows.oy1 * d.wo, 0, sizeof(float) * static_cast<size_t>((d.ho - rows.oy1) * d.wo));
          }
          if (n <= 0) continue;
          int64_t lo, hi;
          valid_columns(d, g, j, lo, hi);
          const int64_t shift = j - g.padding;  // row[k] = x[offset + k + shift] in the valid columns
          float* out = row + rows.oy0 * d.wo;
          // Reads outside the rows' span land in padding columns: skipped here, zeroed below.
          const int64_t first = std::max<int64_t>(0, -shift), last = std::min<int64_t>(n, n - shift);
          std::memcpy(out + first, x + rows.offset + first + shift, sizeof(float) * static_cast<size_t>(last - first));
          zero_outside(out, rows.oy1 - rows.oy0, d.wo, lo, hi);
        }
      }
    return;
  }
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        float* row = cols + ((c * d.kh + i) * d.kw + j) * ld;
        int64_t lo, hi;
        valid_columns(d, g, j, lo, hi);
        const int64_t shift = j - g.padding;  // output column ox reads input column ox·s + shift
        for (int64_t oy = 0; oy < d.ho; ++oy) {
          const int64_t iy = oy * g.stride + i - g.padding;
          float* out = row + oy * d.wo;
          if (iy < 0 || iy >= d.h) {
            if (write_padding)
              for (int64_t ox = 0; ox < d.wo; ++ox) out[ox] = 0.0f;
            continue;
          }
          const float* in = x + (c * d.h + iy) * d.w;
          if (write_padding) {
            for (int64_t ox = 0; ox < lo; ++ox) out[ox] = 0.0f;
            for (int64_t ox = hi; ox < d.wo; ++ox) out[ox] = 0.0f;
          }
          if (g.stride == 1) {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) out[ox] = in[ox + shift];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) out[ox] = in[ox * g.stride + shift];
          }
        }
      }
}

// The adjoint of im2col: x[c, iy, ix] += cols[...]; x must be zeroed first. cols is scratch: the
// fast path zeroes its padding entries.
void col2im(float* cols, int64_t ld, const Dims& d, const ConvShape& g, float* x) {
  if (same_width(d, g)) {
    // One contiguous add per (c, i, j), after zeroing the row's padding columns (they would land
    // on the neighbouring input row's ends). Each input element gets the same terms in the same
    // order as below.
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t i = 0; i < d.kh; ++i) {
        const ShiftedRows rows = shifted_rows(d, g, c, i);
        const int64_t n = rows.floats(d);
        if (n <= 0) continue;
        for (int64_t j = 0; j < d.kw; ++j) {
          float* in = cols + ((c * d.kh + i) * d.kw + j) * ld + rows.oy0 * d.wo;
          int64_t lo, hi;
          valid_columns(d, g, j, lo, hi);
          zero_outside(in, rows.oy1 - rows.oy0, d.wo, lo, hi);
          const int64_t shift = j - g.padding;
          const int64_t first = std::max<int64_t>(0, -shift), last = std::min<int64_t>(n, n - shift);
          float* out = x + rows.offset + shift;
#pragma omp simd
          for (int64_t k = first; k < last; ++k) out[k] += in[k];
        }
      }
    return;
  }
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        const float* row = cols + ((c * d.kh + i) * d.kw + j) * ld;
        int64_t lo, hi;
        valid_columns(d, g, j, lo, hi);
        for (int64_t oy = 0; oy < d.ho; ++oy) {
          const int64_t iy = oy * g.stride + i - g.padding;
          if (iy < 0 || iy >= d.h) continue;
          float* out = x + (c * d.h + iy) * d.w;
          const float* in = row + oy * d.wo;
          const int64_t shift = j - g.padding;  // output column ox came from out[ox·s + shift]
          if (g.stride == 1) {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) out[ox + shift] += in[ox];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) out[ox * g.stride + shift] += in[ox];
          }
        }
      }
}

// gathered[r, (b, p)] = dy[n0 + b, rows[r] (r when rows is null), p] for b < samples: the chunk's
// output gradient as one [rows, samples·Ho·Wo] matrix.
NNR_INLINE_LOOPS void gather_dy(const float* dy, const Dims& d, int64_t n0, int64_t samples, const int64_t* rows, int64_t open,
               float* gathered) {
  const int64_t pixels = d.pixels(), ld = samples * pixels;
  for (int64_t b = 0; b < samples; ++b) {
    const float* sample = dy + (n0 + b) * d.o * pixels;
    for (int64_t r = 0; r < open; ++r) {
      const float* src = sample + (rows ? rows[r] : r) * pixels;
      float* dst = gathered + r * ld + b * pixels;
#pragma omp simd
      for (int64_t p = 0; p < pixels; ++p) dst[p] = src[p];
    }
  }
}

bool use_winograd(const ConvShape& g, ConvAlgorithm algorithm) {
  return conv_algorithm_for(g, algorithm) == ConvAlgorithm::Winograd;
}

}  // namespace

ConvAlgorithm parse_conv_algorithm(const char* value) {
  const std::string v = value ? value : "";
  if (v.empty() || v == "auto") return ConvAlgorithm::Automatic;
  if (v == "im2col") return ConvAlgorithm::Im2col;
  if (v == "winograd") return ConvAlgorithm::Winograd;
  throw std::invalid_argument("NNR_CONV_ALGORITHM must be auto, im2col or winograd, got '" + v + "'");
}

ConvAlgorithm conv_algorithm_for(const ConvShape& shape, ConvAlgorithm requested) {
  if (requested != ConvAlgorithm::Automatic) return requested;
  static const ConvAlgorithm forced = parse_conv_algorithm(std::getenv("NNR_CONV_ALGORITHM"));
  if (forced == ConvAlgorithm::Im2col || !winograd_fits(shape)) return ConvAlgorithm::Im2col;
  if (forced == ConvAlgorithm::Winograd) return ConvAlgorithm::Winograd;
  return shape.c >= kWinogradMinChannels && shape.o >= kWinogradMinChannels ? ConvAlgorithm::Winograd
                                                                            : ConvAlgorithm::Im2col;
}

void conv2d_forward_cpu(const float* x, const float* w, const float* bias, const ConvShape& g, float* y,
                        int64_t samples_per_gemm, ConvAlgorithm algorithm) {
  if (use_winograd(g, algorithm)) return conv2d_forward_winograd_cpu(x, w, bias, g, y);
  const Dims d = dims_of(g);
  if (d.n == 0) return;
  const int64_t patch = d.patch(), pixels = d.pixels();
  const Chunks ch = chunks_of(d.n, (patch + d.o) * pixels, samples_per_gemm);
  parallel_ranges(ch.count, [&](int, int64_t first, int64_t last) {
    float* cols = thread_scratch(0, static_cast<size_t>(patch * ch.size * pixels));
    float* out = thread_scratch(1, static_cast<size_t>(d.o * ch.size * pixels));
    int64_t cols_ld = 0;  // the layout whose padding zeros cols holds (none yet in this share)
    for (int64_t k = first; k < last; ++k) {
      const int64_t n0 = k * ch.size, samples = std::min(ch.size, d.n - n0), ld = samples * pixels;
      for (int64_t b = 0; b < samples; ++b)
        im2col(x + (n0 + b) * d.image(), d, g, cols + b * pixels, ld, ld != cols_ld);
      cols_ld = ld;
      // out[o, (b, p)] = Σ_q w[o, q] cols[q, (b, p)]: the whole chunk in one GEMM.
      gemm_cpu(w, false, cols, false, out, d.o, ld, patch, 1.0f, 0.0f);
      // Back to NCHW, adding the bias on the way.
      for (int64_t b = 0; b < samples; ++b)
        for (int64_t o = 0; o < d.o; ++o) {
          const float* src = out + o * ld + b * pixels;
          float* dst = y + ((n0 + b) * d.o + o) * pixels;
          const float bo = bias ? bias[o] : 0.0f;
          if (bias) {
#pragma omp simd
            for (int64_t p = 0; p < pixels; ++p) dst[p] = src[p] + bo;
          } else {
            std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(pixels));
          }
        }
    }
  }, ch.threads);
}

void conv2d_backward_data_cpu(const float* dy, const float* w, const ConvShape& g, float* dx,
                              int64_t samples_per_gemm, ConvAlgorithm algorithm) {
  if (use_winograd(g, algorithm)) return conv2d_backward_data_winograd_cpu(dy, w, g, dx);
  const Dims d = dims_of(g);
  if (d.n == 0) return;
  const int64_t patch = d.patch(), pixels = d.pixels();
  const Chunks ch = chunks_of(d.n, (patch + d.o) * pixels, samples_per_gemm);
  parallel_ranges(ch.count, [&](int, int64_t first, int64_t last) {
    float* cols = thread_scratch(0, static_cast<size_t>(patch * ch.size * pixels));
    float* grad = thread_scratch(1, static_cast<size_t>(d.o * ch.size * pixels));
    for (int64_t k = first; k < last; ++k) {
      const int64_t n0 = k * ch.size, samples = std::min(ch.size, d.n - n0), ld = samples * pixels;
      gather_dy(dy, d, n0, samples, nullptr, d.o, grad);
      // cols[q, (b, p)] = Σ_o w[o, q] dy[b, o, p]: the whole chunk in one GEMM.
      gemm_cpu(w, true, grad, false, cols, patch, ld, d.o, 1.0f, 0.0f);
      for (int64_t b = 0; b < samples; ++b) {
        float* out = dx + (n0 + b) * d.image();
        std::memset(out, 0, sizeof(float) * static_cast<size_t>(d.image()));
        col2im(cols + b * pixels, ld, d, g, out);
      }
    }
  }, ch.threads);
}

void conv2d_backward_filter_cpu(const float* x, const float* dy, const ConvShape& g, const int64_t* rows,
                                int64_t open_rows, float* dw, int64_t samples_per_gemm,
                                ConvAlgorithm algorithm) {
  if (use_winograd(g, algorithm)) return conv2d_backward_filter_winograd_cpu(x, dy, g, rows, open_rows, dw);
  const Dims d = dims_of(g);
  const int64_t open = rows ? open_rows : d.o;
  if (open == 0 || d.n == 0) return;
  const int64_t patch = d.patch(), pixels = d.pixels();
  const Chunks ch = chunks_of(d.n, (patch + open) * pixels, samples_per_gemm);
  // Each thread sums its chunks into its own [open, patch] buffer; the buffers are added at the end.
  std::vector<std::vector<float>> partial(static_cast<size_t>(ch.threads),
                                          std::vector<float>(static_cast<size_t>(open * patch), 0.0f));
  parallel_ranges(ch.count, [&](int share, int64_t first, int64_t last) {
    float* cols = thread_scratch(0, static_cast<size_t>(patch * ch.size * pixels));
    float* grad = thread_scratch(1, static_cast<size_t>(open * ch.size * pixels));
    float* acc = partial[static_cast<size_t>(share)].data();
    int64_t cols_ld = 0;  // the layout whose padding zeros cols holds (none yet in this share)
    for (int64_t k = first; k < last; ++k) {
      const int64_t n0 = k * ch.size, samples = std::min(ch.size, d.n - n0), ld = samples * pixels;
      for (int64_t b = 0; b < samples; ++b)
        im2col(x + (n0 + b) * d.image(), d, g, cols + b * pixels, ld, ld != cols_ld);
      cols_ld = ld;
      gather_dy(dy, d, n0, samples, rows, open, grad);  // the open filters' rows only
      // acc[r, q] += Σ_(b, p) dy[b, r, p] cols[q, (b, p)]: the whole chunk in one GEMM.
      gemm_cpu(grad, false, cols, true, acc, open, patch, ld, 1.0f, 1.0f);
    }
  }, ch.threads);
  for (const auto& part : partial)
    for (int64_t r = 0; r < open; ++r) {
      float* dst = dw + (rows ? rows[r] : r) * patch;
      const float* src = part.data() + r * patch;
      for (int64_t k = 0; k < patch; ++k) dst[k] += src[k];
    }
}

}  // namespace nnr::kernels
