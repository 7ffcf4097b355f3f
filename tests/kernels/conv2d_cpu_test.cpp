// The CPU convolution (kernels/conv2d.cpp) against a direct convolution summed in double, and its
// batched im2col (several samples per GEMM) against the per-sample path (samples_per_gemm = 1,
// one im2col and one GEMM per sample, as the reference did before batching) on awkward sizes:
// odd batches and channel counts, chunks that do not divide the batch, stride, padding,
// non-square kernels, and open-filter row lists (selective retraining).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/rng.h"
#include "kernels/conv2d.h"

using namespace nnr;
using nnr::kernels::ConvShape;

namespace {

// Batched and per-sample paths sum the same products in a different order (Eigen blocks the
// longer batched GEMM differently, and backward-filter adds per chunk instead of per sample):
// fp32 sums of ≤ a few thousand terms agree to well under 1e-5 of the result's norm. The direct
// reference sums in double, so 1e-5 also bounds each fp32 path's own rounding.
constexpr double kRelFrobenius = 1e-5;

double relative_frobenius(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::vector<float> random_values(int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

struct Direct {
  std::vector<double> y, dx, dw;  // dw: the gradient alone (without the initial contents)
};

// Direct convolution and both gradients in double, by definition.
Direct direct(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& bias,
              const std::vector<float>& dy, const ConvShape& s) {
  const int64_t ho = s.out_h(), wo = s.out_w();
  Direct r{std::vector<double>(dy.size(), 0.0), std::vector<double>(x.size(), 0.0),
           std::vector<double>(w.size(), 0.0)};
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t o = 0; o < s.o; ++o)
      for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox) {
          const size_t yi = static_cast<size_t>(((n * s.o + o) * ho + oy) * wo + ox);
          double acc = bias[static_cast<size_t>(o)];
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t i = 0; i < s.kh; ++i)
              for (int64_t j = 0; j < s.kw; ++j) {
                const int64_t iy = oy * s.stride + i - s.padding, ix = ox * s.stride + j - s.padding;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                const size_t xi = static_cast<size_t>(((n * s.c + c) * s.h + iy) * s.w + ix);
                const size_t wi = static_cast<size_t>(((o * s.c + c) * s.kh + i) * s.kw + j);
                acc += static_cast<double>(x[xi]) * w[wi];
                r.dx[xi] += static_cast<double>(dy[yi]) * w[wi];
                r.dw[wi] += static_cast<double>(dy[yi]) * x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

struct Case {
  int64_t n, c, h, w, o, kh, kw, stride, padding;
};

ConvShape shape_of(const Case& k) {
  ConvShape s;
  s.n = k.n, s.c = k.c, s.h = k.h, s.w = k.w, s.o = k.o, s.kh = k.kh, s.kw = k.kw;
  s.stride = k.stride, s.padding = k.padding;
  return s;
}

}  // namespace

TEST_CASE("Batched im2col convolution equals the per-sample path and a direct double convolution",
          "[conv2d][cpu]") {
  Rng rng(151);
  const std::vector<Case> cases{
      {7, 3, 9, 7, 5, 3, 3, 1, 1},   // odd batch, channels, filters
      {13, 1, 28, 28, 3, 3, 3, 1, 1},  // the first layer of the bench CNN, odd batch
      {9, 5, 11, 9, 7, 5, 3, 2, 2},  // non-square kernel, stride 2, padding 2
      {5, 3, 8, 8, 4, 1, 1, 1, 0},   // 1x1 kernel
      {11, 6, 7, 10, 3, 2, 4, 3, 0},  // stride 3 without padding, kernel wider than tall
      {1, 2, 5, 5, 3, 5, 5, 1, 2},   // one sample
      {6, 4, 9, 7, 5, 5, 3, 1, 1},   // stride 1, as wide as the input but 2 rows shorter (5x3 kernel)
  };
  for (const Case& k : cases) {
    const ConvShape s = shape_of(k);
    const int64_t pixels = s.out_h() * s.out_w();
    const auto x = random_values(s.n * s.c * s.h * s.w, rng);
    const auto w = random_values(s.o * s.c * s.kh * s.kw, rng);
    const auto bias = random_values(s.o, rng);
    const auto dy = random_values(s.n * s.o * pixels, rng);
    const auto dw0 = random_values(s.o * s.c * s.kh * s.kw, rng);
    const Direct want = direct(x, w, bias, dy, s);
    std::vector<double> want_dw = want.dw;
    for (size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += dw0[i];

    // Per sample (1), chunks that do not divide the batch (2, 3), the whole batch in one GEMM (n),
    // and the default, sized to the cache (0).
    std::vector<float> y1, dx1, dw1;
    for (const int64_t chunk : {int64_t{1}, int64_t{2}, int64_t{3}, s.n, int64_t{0}}) {
      INFO("n " << s.n << " c " << s.c << " " << s.h << "x" << s.w << " o " << s.o << " kernel " << s.kh << "x"
                << s.kw << " stride " << s.stride << " padding " << s.padding << " samples per GEMM " << chunk);
      std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw = dw0;
      kernels::conv2d_forward_cpu(x.data(), w.data(), bias.data(), s, y.data(), chunk);
      kernels::conv2d_backward_data_cpu(dy.data(), w.data(), s, dx.data(), chunk);
      kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, nullptr, 0, dw.data(), chunk);
      CHECK(relative_frobenius(y, want.y) <= kRelFrobenius);
      CHECK(relative_frobenius(dx, want.dx) <= kRelFrobenius);
      CHECK(relative_frobenius(dw, want_dw) <= kRelFrobenius);
      if (chunk == 1) {
        y1 = y, dx1 = dx, dw1 = dw;
      } else {
        CHECK(relative_frobenius(y, widen(y1)) <= kRelFrobenius);
        CHECK(relative_frobenius(dx, widen(dx1)) <= kRelFrobenius);
        CHECK(relative_frobenius(dw, widen(dw1)) <= kRelFrobenius);
      }

      // Without a bias the forward is the same minus the bias, to fp32 rounding of the sum.
      std::vector<float> y_plain(dy.size(), NAN);
      kernels::conv2d_forward_cpu(x.data(), w.data(), nullptr, s, y_plain.data(), chunk);
      std::vector<double> want_plain = want.y;
      for (int64_t i = 0; i < static_cast<int64_t>(want_plain.size()); ++i)
        want_plain[static_cast<size_t>(i)] -= bias[static_cast<size_t>((i / pixels) % s.o)];
      CHECK(relative_frobenius(y_plain, want_plain) <= kRelFrobenius);

      // Open filters (unsorted, a subset): only their rows of dw change, each as in the full
      // gradient; the closed rows keep their bits.
      const std::vector<int64_t> rows = s.o >= 3 ? std::vector<int64_t>{s.o - 1, 0} : std::vector<int64_t>{1};
      std::vector<float> dw_open = dw0;
      kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, rows.data(), static_cast<int64_t>(rows.size()),
                                          dw_open.data(), chunk);
      const int64_t patch = s.c * s.kh * s.kw;
      for (int64_t r = 0; r < s.o; ++r) {
        const bool open = std::find(rows.begin(), rows.end(), r) != rows.end();
        std::vector<float> got(dw_open.begin() + r * patch, dw_open.begin() + (r + 1) * patch);
        if (open) {
          CHECK(relative_frobenius(got, std::vector<double>(want_dw.begin() + r * patch,
                                                            want_dw.begin() + (r + 1) * patch)) <= kRelFrobenius);
        } else {
          CHECK(got == std::vector<float>(dw0.begin() + r * patch, dw0.begin() + (r + 1) * patch));
        }
      }
    }
  }
}
