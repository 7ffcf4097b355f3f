#include <catch2/catch.hpp>

#include "engine/core/rng.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/gemm.h"
#include "tests/engine/nn/gradient_check.h"

using namespace nnr;
using nnr::test::random_tensor;

// Eigen's blocked GEMM sums in a different order than the naive triple loop; over k <= 300
// float terms of O(1) values the difference stays below 1e-4 relative to the magnitude.
constexpr double kGemmTolerance = 1e-4;

TEST_CASE("gemm matches a naive triple loop for every transpose combination and odd sizes", "[gemm]") {
  Rng rng(1);
  const int64_t m = 31, n = 17, k = 257;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, rng);
      Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, rng);
      Tensor c = random_tensor({m, n}, rng);
      Tensor c0 = c.clone();
      gemm(a, ta, b, tb, c, 0.5f, 2.0f);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t l = 0; l < k; ++l) s += double(ta ? a[l * m + i] : a[i * k + l]) * (tb ? b[j * k + l] : b[l * n + j]);
          const double expected = 0.5 * s + 2.0 * c0[i * n + j];
          REQUIRE(std::abs(c[i * n + j] - expected) <= kGemmTolerance * std::max(1.0, std::sqrt(double(k))));
        }
    }
  Tensor bad({3, 3});
  REQUIRE_THROWS_WITH(gemm(Tensor({2, 4}), false, Tensor({3, 2}), false, bad), Catch::Contains("shapes do not match"));
}

TEST_CASE("conv2d forward matches a direct convolution", "[conv]") {
  Rng rng(2);
  const Conv2dGeometry g{2, 1};
  const Tensor x = random_tensor({3, 7, 5, 7}, rng), w = random_tensor({4, 7, 3, 3}, rng), b = random_tensor({4}, rng);
  const Shape ys = conv2d_output_shape(x.shape(), w.shape(), g);
  REQUIRE(ys == Shape{3, 4, 3, 4});
  Tensor y = Tensor::empty(ys);
  conv2d_forward(x, w, &b, g, y);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t o = 0; o < 4; ++o)
      for (int64_t oy = 0; oy < ys[2]; ++oy)
        for (int64_t ox = 0; ox < ys[3]; ++ox) {
          double s = b[o];
          for (int64_t c = 0; c < 7; ++c)
            for (int64_t i = 0; i < 3; ++i)
              for (int64_t j = 0; j < 3; ++j) {
                const int64_t iy = oy * 2 + i - 1, ix = ox * 2 + j - 1;
                if (iy >= 0 && iy < 5 && ix >= 0 && ix < 7)
                  s += double(x[((n * 7 + c) * 5 + iy) * 7 + ix]) * w[((o * 7 + c) * 3 + i) * 3 + j];
              }
          REQUIRE(y[((n * 4 + o) * ys[2] + oy) * ys[3] + ox] == Approx(s).margin(1e-4));
        }
}
