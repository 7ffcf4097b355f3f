#pragma once
// Shared pieces of the regularizer tests: seeded synthetic data and the naive references
// (one backward pass per sample; finite differences) the fast estimators are checked against.
#include <cmath>
#include <vector>

#include "engine/core/rng.h"
#include "engine/data/dataset.h"
#include "engine/nn/sequential.h"
#include "engine/nn/tape.h"
#include "engine/ops/softmax_cross_entropy.h"
#include "regularizers/gradient_statistics.h"

namespace nnr::test {

// n samples of `sample` shape, features uniform in [-1, 1], labels uniform in [0, classes).
inline Dataset random_dataset(int64_t n, const Shape& sample, int32_t classes, uint64_t seed) {
  Rng rng(seed);
  Shape shape{n};
  shape.insert(shape.end(), sample.begin(), sample.end());
  Tensor x(shape);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(2.0 * rng.uniform() - 1.0);
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (auto& v : y) v = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return make_dataset(std::move(x), std::move(y), classes, "synthetic");
}

// Sample i alone as a batch of one.
inline Tensor sample_of(const Dataset& d, int64_t i) {
  Shape s = d.features.shape();
  s[0] = 1;
  Tensor x = Tensor::empty(s);
  const int64_t per = x.numel();
  std::copy(d.features.data() + i * per, d.features.data() + (i + 1) * per, x.data());
  return x;
}

struct NaiveStatistics {
  std::vector<std::vector<double>> squared, absolute;  // per parameter, per element
};

// One forward + backward per sample: g_n read from the parameters' gradients.
inline NaiveStatistics naive_gradient_statistics(Sequential& model, const Dataset& d, OutputGradient target) {
  const std::vector<Parameter*> params = model.parameters();
  NaiveStatistics s;
  for (Parameter* p : params) {
    s.squared.emplace_back(static_cast<size_t>(p->value.numel()), 0.0);
    s.absolute.emplace_back(static_cast<size_t>(p->value.numel()), 0.0);
  }
  for (int64_t n = 0; n < d.size(); ++n) {
    model.zero_grad();
    Tape tape;
    const Tensor x = sample_of(d, n);
    const Tensor& f = model.forward(x, tape);
    Tensor g = Tensor::empty(f.shape());
    if (target == OutputGradient::OutputNorm) {
      for (int64_t k = 0; k < f.numel(); ++k) g[k] = 2.0f * f[k];
    } else {
      softmax(f, g);
      g[d.labels[static_cast<size_t>(n)]] -= 1.0f;
    }
    tape.backward_from(std::move(g));
    for (size_t i = 0; i < params.size(); ++i)
      for (int64_t k = 0; k < params[i]->grad.numel(); ++k) {
        const double v = params[i]->grad[k];
        s.squared[i][static_cast<size_t>(k)] += v * v;
        s.absolute[i][static_cast<size_t>(k)] += std::fabs(v);
      }
  }
  model.zero_grad();
  return s;
}

inline double squared_norm(const Tensor& t) {
  double s = 0.0;
  for (int64_t k = 0; k < t.numel(); ++k) s += static_cast<double>(t[k]) * t[k];
  return s;
}

// Σ_n |d/dε ‖f(x_n)‖²| with unit `unit` of `layer` scaled by (1 + ε) (its weight row and bias),
// by central differences: the Taylor term Σ_pixels a·∂‖f‖²/∂a, independently of any backward.
inline double naive_neuron_importance(Sequential& model, const Dataset& d, size_t layer, int64_t unit, float eps) {
  std::vector<Parameter*> ps = model.layer(layer).parameters();
  std::vector<Tensor> saved;
  for (Parameter* p : ps) saved.push_back(p->value.clone());
  auto set_scale = [&](float factor) {
    for (size_t i = 0; i < ps.size(); ++i) {
      const int64_t len = ps[i]->row_length();
      for (int64_t k = 0; k < len; ++k) ps[i]->value[unit * len + k] = saved[i][unit * len + k] * factor;
    }
  };
  double total = 0.0;
  for (int64_t n = 0; n < d.size(); ++n) {
    const Tensor x = sample_of(d, n);
    set_scale(1.0f + eps);
    const double up = squared_norm(model.forward(x));
    set_scale(1.0f - eps);
    const double down = squared_norm(model.forward(x));
    set_scale(1.0f);
    total += std::fabs((up - down) / (2.0 * eps));
  }
  return total;
}

}  // namespace nnr::test
