#include <catch2/catch.hpp>

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
