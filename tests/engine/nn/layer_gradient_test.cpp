#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "engine/core/rng.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/loss.h"
#include "engine/nn/shape_layers.h"
#include "tests/engine/nn/gradient_check.h"

using namespace nnr;
using nnr::test::check_layer_gradients;
using nnr::test::random_tensor;

namespace {

void randomise(Parameter& p, Rng& rng) {
  for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = static_cast<float>(rng.normal()) * 0.5f;
}

}  // namespace

TEST_CASE("Linear gradients match finite differences (batch 3, 7 -> 5, image-shaped input)", "[grad]") {
  Rng rng(1);
  Linear layer(7, 5, true, rng);
  randomise(layer.bias(), rng);
  check_layer_gradients(layer, random_tensor({3, 7}, rng), 11);
  Linear flat(35, 4, false, rng);
  check_layer_gradients(flat, random_tensor({3, 1, 5, 7}, rng), 12);
}

TEST_CASE("Conv2d gradients match finite differences (batch 3, 7 channels, 5x7, stride and padding)", "[grad]") {
  Rng rng(2);
  for (auto [kernel, stride, padding] : {std::tuple{3, 1, 1}, std::tuple{3, 2, 1}, std::tuple{2, 1, 0}}) {
    Conv2d layer(7, 4, kernel, Conv2dGeometry{stride, padding}, rng);
    randomise(layer.bias(), rng);
    check_layer_gradients(layer, random_tensor({3, 7, 5, 7}, rng), 20 + kernel + stride);
  }
}

TEST_CASE("Conv2d gradients match finite differences on the Winograd path (8 -> 9 channels, 3x3, odd 5x7)",
          "[grad]") {
  Rng rng(6);
  for (const int padding : {1, 0}) {
    Conv2d layer(8, 9, 3, Conv2dGeometry{1, padding}, rng);
    randomise(layer.bias(), rng);
    check_layer_gradients(layer, random_tensor({2, 8, 5, 7}, rng), 50 + padding);
  }
}

TEST_CASE("MaxPool2d gradients match finite differences", "[grad]") {
  // Inputs are a shuffled ladder of well separated values, so a finite-difference step
  // never changes which element is the maximum.
  Rng rng(3);
  Tensor x({3, 7, 5, 7});
  std::vector<int64_t> order(static_cast<size_t>(x.numel()));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 0.05f * static_cast<float>(order[static_cast<size_t>(i)]) - 10.0f;
  MaxPool2d pool(2);
  check_layer_gradients(pool, std::move(x), 31);
  REQUIRE(pool.output_shape({3, 7, 5, 7}) == Shape{3, 7, 2, 3});
}

TEST_CASE("ReLU, Flatten and Dropout gradients match finite differences", "[grad]") {
  Rng rng(4);
  // ReLU: keep inputs away from the kink at 0 by more than the step.
  Tensor x = random_tensor({3, 7, 5}, rng);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] += x[i] >= 0 ? 0.1f : -0.1f;
  ReLU relu;
  check_layer_gradients(relu, std::move(x), 41);
  Flatten flatten;
  check_layer_gradients(flatten, random_tensor({3, 2, 5, 7}, rng), 42);
  // Dropout draws a new mask each forward; with rate 0 it is the identity in training too.
  Dropout identity(0.0f, 5);
  check_layer_gradients(identity, random_tensor({3, 11}, rng), 43);
}

TEST_CASE("Dropout keeps the expected fraction, scales by 1/(1-p) and routes gradients through its mask", "[dropout]") {
  Rng rng(5);
  Dropout drop(0.3f, 77);
  const Tensor x = random_tensor({50, 40}, rng);
  const Tensor y = drop.forward(x, true);
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (y[i] != 0.0f) {
      ++kept;
      REQUIRE(y[i] == Approx(x[i] / 0.7f));
    }
  }
  // 2000 Bernoulli(0.7) draws: 1400 expected, sd about 20.
  REQUIRE(std::abs(kept - 1400) < 120);
  Tensor dy = random_tensor({50, 40}, rng), dx({50, 40});
  drop.backward(x, y, dy, &dx);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(dx[i] == Approx(y[i] != 0.0f ? dy[i] / 0.7f : 0.0f));
  const Tensor eval = drop.forward(x, false);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(eval[i] == x[i]);
}

TEST_CASE("SoftmaxCrossEntropy gradient matches finite differences and is stable for huge logits", "[grad][loss]") {
  Rng rng(6);
  Tensor logits = random_tensor({3, 7}, rng, 2.0f);
  const std::vector<int32_t> labels{0, 6, 3};
  SoftmaxCrossEntropy loss;
  loss.forward(logits, labels);
  Tensor grad({3, 7});
  loss.backward(grad);
  for (int64_t i = 0; i < logits.numel(); ++i) {
    const float saved = logits[i];
    logits[i] = saved + 1e-2f;
    const double up = loss.forward(logits, labels);
    logits[i] = saved - 1e-2f;
    const double down = loss.forward(logits, labels);
    logits[i] = saved;
    REQUIRE(std::abs((up - down) / 2e-2 - grad[i]) <= 2e-3);
  }
  Tensor huge = Tensor::from_vector({1, 3}, {1000.0f, -1000.0f, 999.0f});
  const double value = loss.forward(huge, {2});
  REQUIRE(std::isfinite(value));
  REQUIRE(value == Approx(1.0 + std::log1p(std::exp(-1.0))).epsilon(1e-5));
  REQUIRE_THROWS_WITH(loss.forward(huge, {3}), Catch::Contains("label 3 at row 0 outside [0, 3)"));
}
