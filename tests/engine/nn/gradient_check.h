#pragma once
// Finite-difference checks for layers: f(x, θ) = Σ r ⊙ layer(x) with a fixed random r, so
// df/dy = r. Central differences in float with step kStep; an entry passes when
// |numeric − analytic| <= kTolerance · max(1, |numeric|). float32 central differences with
// h = 1e-2 on these O(1) functions are accurate to about 1e-3 relative; 2e-2 leaves room
// for rounding in the sums of up to a few hundred terms and still catches any wrong formula
// (a missing or transposed term changes the gradient by O(1)).
#include <catch2/catch.hpp>

#include <functional>
#include <vector>

#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/nn/layer.h"
#include "engine/nn/loss.h"
#include "engine/nn/sequential.h"
#include "engine/nn/tape.h"

namespace nnr::test {

constexpr float kStep = 1e-2f;
constexpr float kTolerance = 2e-2f;

inline Tensor random_tensor(const Shape& shape, Rng& rng, float scale = 1.0f);

// Random inputs with random labels in [0, classes).
struct LabelledBatch {
  Tensor x;
  std::vector<int32_t> y;
};
inline LabelledBatch random_batch(const Shape& shape, int32_t classes, uint64_t seed) {
  Rng rng(seed);
  LabelledBatch b{random_tensor(shape, rng), {}};
  for (int64_t i = 0; i < shape[0]; ++i) b.y.push_back(static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes))));
  return b;
}

// One training step's gradients: forward on a fresh tape, loss, backward (no update). Returns the loss.
inline double backprop(Sequential& model, const LabelledBatch& b) {
  Tape tape;
  SoftmaxCrossEntropy loss;
  model.zero_grad();
  model.forward(b.x, tape);
  const double value = tape.apply_loss(loss, b.y);
  tape.backward();
  return value;
}

inline Tensor random_tensor(const Shape& shape, Rng& rng, float scale) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal()) * scale;
  return t;
}

inline double weighted_sum(const Tensor& y, const Tensor& r) {
  double s = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) s += double(y[i]) * r[i];
  return s;
}

// Checks dx and every parameter gradient of `layer` at input x against central differences.
inline void check_layer_gradients(Layer& layer, Tensor x, uint64_t seed) {
  Rng rng(seed);
  const Tensor y0 = layer.forward(x, true);
  const Tensor r = random_tensor(y0.shape(), rng);
  for (Parameter* p : layer.parameters()) p->grad.zero();
  Tensor dx = Tensor::empty(x.shape());
  layer.backward(x, y0, r, &dx);

  auto f = [&]() { return weighted_sum(layer.forward(x, true), r); };
  auto check = [&](Tensor& values, const Tensor& analytic, const char* what) {
    INFO(layer.describe() << " d/d" << what);
    for (int64_t i = 0; i < values.numel(); ++i) {
      const float saved = values[i];
      values[i] = saved + kStep;
      const double up = f();
      values[i] = saved - kStep;
      const double down = f();
      values[i] = saved;
      const double numeric = (up - down) / (2.0 * kStep);
      INFO("entry " << i << ": numeric " << numeric << ", analytic " << analytic[i]);
      REQUIRE(std::abs(numeric - analytic[i]) <= kTolerance * std::max(1.0, std::abs(numeric)));
    }
  };
  check(x, dx, "x");
  for (Parameter* p : layer.parameters()) check(p->value, p->grad, p->name.c_str());
}

}  // namespace nnr::test
