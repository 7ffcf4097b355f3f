// The CPU convolution (kernels/conv2d.cpp) against a direct convolution summed in double, and its
// batched im2col (several samples per GEMM) against the per-sample path (samples_per_gemm = 1,
// one im2col and one GEMM per sample, as the reference did before batching) on awkward sizes:
// odd batches and channel counts, chunks that do not divide the batch, stride, padding,
// non-square kernels, and open-filter row lists (selective retraining). The Winograd path
// (kernels/conv2d_winograd.cpp) against the same direct convolution and against im2col.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/rng.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_winograd.h"

using namespace nnr;
using nnr::kernels::ConvShape;

namespace {

// Batched and per-sample paths sum the same products in a different order (Eigen blocks the
// longer batched GEMM differently, and backward-filter adds per chunk instead of per sample):
// fp32 sums of ≤ a few thousand terms agree to well under 1e-5 of the result's norm. The direct
// reference sums in double, so 1e-5 also bounds each fp32 path's own rounding.
constexpr double kRelFrobenius = 1e-5;
constexpr auto kIm2col = kernels::ConvAlgorithm::Im2col;
constexpr auto kWinograd = kernels::ConvAlgorithm::Winograd;

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

std::vector<double> plus(std::vector<double> a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

// Open filters (unsorted, a subset): only their rows of dw change, each as in the full gradient
// want_dw; the closed rows keep dw0's bits.
void check_open_filters(const std::vector<float>& x, const std::vector<float>& dy, const ConvShape& s,
                        const std::vector<float>& dw0, const std::vector<double>& want_dw, int64_t samples_per_gemm,
                        kernels::ConvAlgorithm algorithm) {
  const std::vector<int64_t> rows = s.o >= 3 ? std::vector<int64_t>{s.o - 1, 0} : std::vector<int64_t>{1};
  std::vector<float> dw_open = dw0;
  kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, rows.data(), static_cast<int64_t>(rows.size()),
                                      dw_open.data(), samples_per_gemm, algorithm);
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
    const std::vector<double> want_dw = plus(want.dw, dw0);

    // Per sample (1), chunks that do not divide the batch (2, 3), the whole batch in one GEMM (n),
    // and the default, sized to the cache (0).
    std::vector<float> y1, dx1, dw1;
    for (const int64_t chunk : {int64_t{1}, int64_t{2}, int64_t{3}, s.n, int64_t{0}}) {
      INFO("n " << s.n << " c " << s.c << " " << s.h << "x" << s.w << " o " << s.o << " kernel " << s.kh << "x"
                << s.kw << " stride " << s.stride << " padding " << s.padding << " samples per GEMM " << chunk);
      std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw = dw0;
      kernels::conv2d_forward_cpu(x.data(), w.data(), bias.data(), s, y.data(), chunk, kIm2col);
      kernels::conv2d_backward_data_cpu(dy.data(), w.data(), s, dx.data(), chunk, kIm2col);
      kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, nullptr, 0, dw.data(), chunk, kIm2col);
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
      kernels::conv2d_forward_cpu(x.data(), w.data(), nullptr, s, y_plain.data(), chunk, kIm2col);
      std::vector<double> want_plain = want.y;
      for (int64_t i = 0; i < static_cast<int64_t>(want_plain.size()); ++i)
        want_plain[static_cast<size_t>(i)] -= bias[static_cast<size_t>((i / pixels) % s.o)];
      CHECK(relative_frobenius(y_plain, want_plain) <= kRelFrobenius);

      check_open_filters(x, dy, s, dw0, want_dw, chunk, kIm2col);
    }
  }
}

TEST_CASE("Winograd F(2x2, 3x3) convolution equals a direct double convolution and im2col", "[conv2d][cpu]") {
  Rng rng(152);
  // The transforms scale terms by up to 4 before the GEMMs sum them, so fp32 rounding is a few
  // times im2col's: still well under 1e-5 of the result's norm for these channel counts.
  const std::vector<Case> cases{
      {5, 8, 14, 14, 9, 3, 3, 1, 1},    // the bench CNN's second layer, smaller: even output
      {13, 33, 7, 7, 17, 3, 3, 1, 1},   // 7x7: odd output, the last tile row and column cropped
      {3, 9, 7, 11, 10, 3, 3, 1, 0},    // no padding: 5x9 output
      {4, 3, 5, 6, 2, 3, 3, 1, 2},      // padding 2 (backward-data at padding 0), few channels
      {2, 2, 3, 3, 3, 3, 3, 1, 0},      // a single 1x1 output
      {1, 11, 2, 9, 12, 3, 3, 1, 1},    // one sample, two rows
  };
  for (const Case& k : cases) {
    const ConvShape s = shape_of(k);
    INFO("n " << s.n << " c " << s.c << " " << s.h << "x" << s.w << " o " << s.o << " padding " << s.padding);
    REQUIRE(kernels::winograd_fits(s));
    const int64_t pixels = s.out_h() * s.out_w();
    const auto x = random_values(s.n * s.c * s.h * s.w, rng);
    const auto w = random_values(s.o * s.c * 9, rng);
    const auto bias = random_values(s.o, rng);
    const auto dy = random_values(s.n * s.o * pixels, rng);
    const auto dw0 = random_values(s.o * s.c * 9, rng);
    const Direct want = direct(x, w, bias, dy, s);
    const std::vector<double> want_dw = plus(want.dw, dw0);

    std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw = dw0;
    kernels::conv2d_forward_cpu(x.data(), w.data(), bias.data(), s, y.data(), 0, kWinograd);
    kernels::conv2d_backward_data_cpu(dy.data(), w.data(), s, dx.data(), 0, kWinograd);
    kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, nullptr, 0, dw.data(), 0, kWinograd);
    CHECK(relative_frobenius(y, want.y) <= kRelFrobenius);
    CHECK(relative_frobenius(dx, want.dx) <= kRelFrobenius);
    CHECK(relative_frobenius(dw, want_dw) <= kRelFrobenius);

    std::vector<float> y_ref(dy.size(), NAN), dx_ref(x.size(), NAN), dw_ref = dw0;
    kernels::conv2d_forward_cpu(x.data(), w.data(), bias.data(), s, y_ref.data(), 0, kIm2col);
    kernels::conv2d_backward_data_cpu(dy.data(), w.data(), s, dx_ref.data(), 0, kIm2col);
    kernels::conv2d_backward_filter_cpu(x.data(), dy.data(), s, nullptr, 0, dw_ref.data(), 0, kIm2col);
    CHECK(relative_frobenius(y, widen(y_ref)) <= kRelFrobenius);
    CHECK(relative_frobenius(dx, widen(dx_ref)) <= kRelFrobenius);
    CHECK(relative_frobenius(dw, widen(dw_ref)) <= kRelFrobenius);

    check_open_filters(x, dy, s, dw0, want_dw, 0, kWinograd);
  }
}

TEST_CASE("The automatic convolution algorithm takes Winograd only for 3x3 stride-1 layers with enough channels",
          "[conv2d][cpu]") {
  using kernels::ConvAlgorithm;
  using kernels::conv_algorithm_for;
  // The bench CNN: conv1 (1 -> 32) stays on im2col, conv2 (32 -> 64) runs Winograd.
  CHECK(conv_algorithm_for(shape_of({128, 1, 28, 28, 32, 3, 3, 1, 1})) == ConvAlgorithm::Im2col);
  CHECK(conv_algorithm_for(shape_of({128, 32, 14, 14, 64, 3, 3, 1, 1})) == ConvAlgorithm::Winograd);
  CHECK(conv_algorithm_for(shape_of({8, 32, 14, 14, 7, 3, 3, 1, 1})) == ConvAlgorithm::Im2col);
  CHECK(conv_algorithm_for(shape_of({8, 32, 14, 14, 64, 3, 3, 2, 1})) == ConvAlgorithm::Im2col);  // stride 2
  CHECK(conv_algorithm_for(shape_of({8, 32, 14, 14, 64, 5, 5, 1, 2})) == ConvAlgorithm::Im2col);  // 5x5
  CHECK(conv_algorithm_for(shape_of({8, 32, 14, 14, 64, 3, 3, 1, 3})) == ConvAlgorithm::Im2col);  // padding 3
  CHECK(conv_algorithm_for(shape_of({8, 32, 14, 14, 64, 5, 5, 1, 2}), ConvAlgorithm::Im2col) ==
        ConvAlgorithm::Im2col);
  // NNR_CONV_ALGORITHM's values; a typo is an error that names it, not a silent default.
  CHECK(kernels::parse_conv_algorithm(nullptr) == ConvAlgorithm::Automatic);
  CHECK(kernels::parse_conv_algorithm("") == ConvAlgorithm::Automatic);
  CHECK(kernels::parse_conv_algorithm("auto") == ConvAlgorithm::Automatic);
  CHECK(kernels::parse_conv_algorithm("im2col") == ConvAlgorithm::Im2col);
  CHECK(kernels::parse_conv_algorithm("winograd") == ConvAlgorithm::Winograd);
  CHECK_THROWS_WITH(kernels::parse_conv_algorithm("wino"),
                    Catch::Contains("NNR_CONV_ALGORITHM must be auto, im2col or winograd, got 'wino'"));
  // Asking for Winograd on a shape it cannot compute is an error, not a silent fallback.
  const ConvShape five = shape_of({1, 2, 6, 6, 2, 5, 5, 1, 2});
  std::vector<float> x(72, 1.0f), w(100, 1.0f), y(72, 0.0f);
  CHECK_THROWS_WITH(kernels::conv2d_forward_cpu(x.data(), w.data(), nullptr, five, y.data(), 0, kWinograd),
                    Catch::Contains("3x3 kernel, stride 1 and padding 0-2"));
}
