#include <catch2/catch.hpp>

#include <tuple>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/gemm.h"
#include "engine/ops/softmax_cross_entropy.h"
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

TEST_CASE("conv2d backward data is the exact adjoint of the forward, with padding and stride", "[conv]") {
  // <conv(x), dy> = <x, conv_backward_data(dy)> for any x and dy: a slip in col2im's padding,
  // stride or bounds breaks the identity by O(1), independent of finite-difference noise.
  Rng rng(12);
  for (auto [kernel, stride, padding] : {std::tuple{3, 1, 1}, std::tuple{3, 2, 1}, std::tuple{5, 1, 2},
                                         std::tuple{2, 2, 0}, std::tuple{3, 1, 0}}) {
    INFO("kernel " << kernel << " stride " << stride << " padding " << padding);
    const Conv2dGeometry g{stride, padding};
    const Tensor x = random_tensor({2, 3, 6, 7}, rng), w = random_tensor({4, 3, kernel, kernel}, rng);
    const Shape ys = conv2d_output_shape(x.shape(), w.shape(), g);
    Tensor y = Tensor::empty(ys);
    conv2d_forward(x, w, nullptr, g, y);
    const Tensor dy = random_tensor(ys, rng);
    Tensor dx = Tensor::empty(x.shape());
    dx.fill(123.0f);  // overwritten, not accumulated
    conv2d_backward_data(dy, w, g, dx);
    double lhs = 0.0, rhs = 0.0, scale = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) lhs += double(y[i]) * dy[i], scale += std::abs(double(y[i]) * dy[i]);
    for (int64_t i = 0; i < x.numel(); ++i) rhs += double(x[i]) * dx[i];
    REQUIRE(std::abs(lhs - rhs) <= 1e-5 * std::max(1.0, scale));
  }
}

TEST_CASE("softmax and softmax cross-entropy refuse logits with zero classes", "[loss]") {
  const Tensor logits = Tensor::empty({2, 0});
  Tensor probs = Tensor::empty({2, 0});
  REQUIRE_THROWS_AS(softmax(logits, probs), InvalidArgument);
  REQUIRE_THROWS_WITH(softmax(logits, probs), Catch::Contains("[softmax] logits [2, 0] have no classes"));
  REQUIRE_THROWS_WITH(softmax_cross_entropy_forward(logits, {0, 0}, probs),
                      Catch::Contains("[softmax_cross_entropy] logits [2, 0] have no classes"));
  REQUIRE_THROWS_WITH(softmax_cross_entropy_backward(probs, {0, 0}, 0.5f, probs), Catch::Contains("have no classes"));
  // No rows and no classes: still refused (a model with no output classes is a mistake).
  const Tensor none = Tensor::empty({0, 0});
  Tensor none_probs = Tensor::empty({0, 0});
  REQUIRE_THROWS_AS(softmax_cross_entropy_forward(none, {}, none_probs), InvalidArgument);
  // One class is fine: probability 1, loss 0.
  const Tensor one = Tensor::from_vector({2, 1}, {3.0f, -4.0f});
  Tensor one_probs = Tensor::empty({2, 1});
  REQUIRE(softmax_cross_entropy_forward(one, {0, 0}, one_probs) == Approx(0.0).margin(1e-12));
  REQUIRE(one_probs[0] == 1.0f);
}
