#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "engine/optim/optimizer.h"

using namespace nnr;

namespace {

Parameter make_parameter(const Shape& shape, float value, float grad) {
  Parameter p;
  p.name = "0.weight";
  p.value = Tensor(shape);
  p.value.fill(value);
  p.grad = Tensor(shape);
  p.grad.fill(grad);
  return p;
}

}  // namespace

TEST_CASE("optimizer step honours each parameter's mask and creates state lazily", "[optimizer]") {
  Parameter p = make_parameter({4, 3}, 1.0f, 1.0f);
  p.mask = UpdateMask::of_rows({1});
  auto sgd = make_optimizer({"sgd", 0.5f, 0.9f, 0.0f});
  sgd->step({&p});
  for (int64_t i = 0; i < 12; ++i) REQUIRE(p.value[i] == (i / 3 == 1 ? 0.5f : 1.0f));
  const Tensor* vel = static_cast<Sgd&>(*sgd).velocity(p);
  REQUIRE(vel);
  REQUIRE((*vel)[0] == 0.0f);
  REQUIRE((*vel)[3] == 1.0f);
}

TEST_CASE("optimizer reports the penalty value and applies it only with an anchor and λ > 0", "[optimizer][penalty]") {
  Parameter p = make_parameter({2, 2}, 2.0f, 0.0f);
  p.anchor = Tensor({2, 2});  // θ* = 0, Ω ≡ 1
  auto sgd = make_optimizer({"sgd", 0.1f, 0.0f, 0.0f});
  REQUIRE(sgd->step({&p}, true) == 0.0);  // λ = 0: no penalty
  REQUIRE(p.value[0] == 2.0f);
  sgd->set_penalty_strength(10.0f);
  REQUIRE(sgd->step({&p}, true) == Approx(10.0 * 4 * 4.0));
  REQUIRE(p.value[0] == Approx(2.0f / 3.0f));  // c = 2·0.1·10 = 2: θ ← θ / 3
}

TEST_CASE("optimizer errors name the parameter and the valid optimizer names", "[optimizer]") {
  Parameter p = make_parameter({2, 2}, 1.0f, 1.0f);
  p.grad = Tensor({3});
  auto adam = make_optimizer({"adam", 1e-3f, 0.0f, 0.0f});
  REQUIRE_THROWS_WITH(adam->step({&p}), Catch::Contains("gradient of 0.weight"));
  p.grad = Tensor({2, 2});
  p.mask = UpdateMask::of_rows({5});
  REQUIRE_THROWS_WITH(adam->step({&p}), Catch::Contains("0.weight: row 5 outside [0, 2)"));
  REQUIRE_THROWS_WITH(make_optimizer({"rmsprop", 0.1f, 0.0f, 0.0f}), Catch::Contains("valid: sgd, adam"));
  REQUIRE_THROWS_AS(make_optimizer({"sgd", -1.0f, 0.0f, 0.0f}), InvalidArgument);
}

#ifdef NNR_WITH_CUDA
// The step scalars are host arithmetic (no device needed): what a replayed CUDA graph step reads
// instead of kernel arguments. Checked against the formulas of adam_update_cpu.
TEST_CASE("step scalars for a replayed step follow each parameter's Adam step count", "[optimizer][graph]") {
  Parameter a = make_parameter({2, 3}, 1.0f, 0.5f), frozen = make_parameter({2}, 1.0f, 0.5f);
  frozen.mask = UpdateMask::none();
  AdamConfig config;
  config.lr = 0.01f;
  Adam adam(config);
  adam.step({&a, &frozen});  // a: step 1; frozen: never updated
  const std::vector<Parameter*> params{&a, &frozen};
  std::vector<float> block(params.size() * Optimizer::kStepScalars);
  adam.write_step_scalars(params, block.data());
  const auto expect = [&](size_t slot, int64_t step) {
    const float c1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(0.9f), static_cast<double>(step)));
    const float c2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(0.999f), static_cast<double>(step)));
    INFO("slot " << slot << ", step " << step);
    REQUIRE(block[slot * 3] == 0.01f);
    REQUIRE(block[slot * 3 + 1] == 0.01f / c1);
    REQUIRE(block[slot * 3 + 2] == 1.0f / std::sqrt(c2));
  };
  expect(0, 2);
  expect(1, 1);
  adam.count_replayed_step(params);  // a replay advanced a, not the frozen parameter
  REQUIRE(adam.state(a)->step == 2);
  adam.set_learning_rate(0.02f);
  adam.write_step_scalars(params, block.data());
  REQUIRE(block[0] == 0.02f);
  REQUIRE(block[1] == 0.02f / (1.0f - static_cast<float>(std::pow(static_cast<double>(0.9f), 3.0))));

  Sgd sgd(SgdConfig{0.3f, 0.9f, 0.0f, false});
  sgd.write_step_scalars(params, block.data());
  REQUIRE(block == std::vector<float>{0.3f, 0.3f, 1.0f, 0.3f, 0.3f, 1.0f});
  REQUIRE_THROWS_WITH(Adam(config).count_replayed_step({&a}), Catch::Contains("never been stepped"));
}
#endif

TEST_CASE("Adam through the optimizer counts each parameter's own steps for the bias correction", "[optimizer]") {
  // Parameter a is stepped every time; b is frozen (mask selects none) on the second step, so its
  // count lags by one: both must follow torch.optim.Adam with their own t.
  Parameter a = make_parameter({2}, 0.5f, 0.0f), b = make_parameter({2}, 0.5f, 0.0f);
  b.name = "1.weight";
  auto adam = make_optimizer({"adam", 0.01f, 0.0f, 0.0f});
  const std::vector<float> grads{0.3f, -1.2f, 0.8f, 0.05f};
  double ra = 0.5, ma = 0.0, va = 0.0, rb = 0.5, mb = 0.0, vb = 0.0;
  int tb = 0;
  auto reference = [](double& theta, double& m, double& v, double g, int t) {
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    theta -= 0.01 * (m / (1.0 - std::pow(0.9, t))) / (std::sqrt(v / (1.0 - std::pow(0.999, t))) + 1e-8);
  };
  for (int t = 1; t <= 4; ++t) {
    const float g = grads[static_cast<size_t>(t - 1)];
    a.grad.fill(g);
    b.grad.fill(g);
    b.mask = t == 2 ? UpdateMask::none() : UpdateMask::all();
    const double a0 = ra, b0 = rb;
    const float a_before = a.value[1], b_before = b.value[1];
    adam->step({&a, &b});
    reference(ra, ma, va, g, t);
    if (t != 2) reference(rb, mb, vb, g, ++tb);
    INFO("step " << t);
    // The steps, relative to their size (θ is O(1), a step O(lr)).
    REQUIRE(double(a.value[1]) - a_before == Approx(ra - a0).epsilon(2e-3));
    if (t == 2) REQUIRE(b.value[1] == b_before);
    else REQUIRE(double(b.value[1]) - b_before == Approx(rb - b0).epsilon(2e-3));
  }
  REQUIRE(static_cast<Adam&>(*adam).state(a)->step == 4);
  REQUIRE(static_cast<Adam&>(*adam).state(b)->step == 3);
}
