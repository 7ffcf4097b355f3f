// The penalty λ Σ Ω (θ − θ*)² from the regularizer's side: with Ω and θ* filled by consolidation,
// the value the optimizer reports, its gradient, the closed-form proximal step, masks, and no
// divergence at any λ.
#include <catch2/catch.hpp>

#include "apps/trainer/continual_tasks.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/mask_args.h"
#include "regularizers/regularizer.h"
#include "test_helpers.h"

using namespace nnr;

namespace {

// A model with MAS importance consolidated and its parameters then moved away from θ*.
Sequential consolidated_and_moved(uint64_t seed) {
  Sequential model = build_model("mlp:4-3-2", seed);
  RegularizerOptions o;
  o.samples = 0;
  make_regularizer("mas", o)->consolidate(model, test::random_dataset(20, {4}, 2, seed + 1));
  Rng rng(seed + 2);
  for (Parameter* p : model.parameters())
    for (int64_t k = 0; k < p->value.numel(); ++k) p->value[k] += static_cast<float>(rng.normal() * 0.3);
  model.zero_grad();
  return model;
}

double plain_penalty(Sequential& model, double lambda) {
  double sum = 0.0;
  for (Parameter* p : model.parameters())
    for (int64_t k = 0; k < p->value.numel(); ++k) {
      const double d = static_cast<double>(p->value[k]) - p->anchor[k];
      sum += static_cast<double>(p->omega[k]) * d * d;
    }
  return lambda * sum;
}

}  // namespace

TEST_CASE("the penalty the optimizer reports equals a plain λΣΩ(θ−θ*)² over the consolidated state",
          "[regularizers][penalty]") {
  Sequential model = consolidated_and_moved(1);
  auto sgd = make_optimizer(OptimizerOptions{"sgd", 0.01f, 0.0f, 0.0f});
  sgd->set_penalty_strength(0.7f);
  const double expect = plain_penalty(model, 0.7);
  REQUIRE(expect > 0.0);
  // Float sums of a few dozen terms against double: 1e-5 relative.
  REQUIRE(sgd->step(model.parameters(), true) == Approx(expect).epsilon(1e-5));
}

TEST_CASE("the penalty's gradient 2λΩ(θ−θ*) matches finite differences of its value", "[regularizers][penalty]") {
  Sequential model = consolidated_and_moved(2);
  Parameter& w = *model.parameters()[0];
  kernels::PenaltyArgs view;
  view.anchor = w.anchor.data();
  view.omega = w.omega.data();
  view.lambda = 2.5f;
  view.want_value = true;
  for (int64_t k = 0; k < w.value.numel(); ++k) {
    const float saved = w.value[k], h = 1e-2f;
    w.value[k] = saved + h;
    const double up = kernels::penalty_value_cpu(w.value.data(), w.value.numel(), view);
    w.value[k] = saved - h;
    const double down = kernels::penalty_value_cpu(w.value.data(), w.value.numel(), view);
    w.value[k] = saved;
    const double analytic = 2.0 * 2.5 * w.omega[k] * (static_cast<double>(saved) - w.anchor[k]);
    // The penalty is quadratic, so central differences are exact up to float rounding of the sum.
    REQUIRE((up - down) / (2.0 * h) == Approx(analytic).margin(2e-3 * (1.0 + std::fabs(analytic))));
  }
}

TEST_CASE("with no loss gradient an SGD step is the closed-form proximal step towards θ*",
          "[regularizers][penalty]") {
  for (float lambda : {0.5f, 1e3f, 1e8f}) {
    Sequential model = consolidated_and_moved(3);
    std::vector<Tensor> before;
    for (Parameter* p : model.parameters()) before.push_back(p->value.clone());
    const float lr = 0.1f;
    auto sgd = make_optimizer(OptimizerOptions{"sgd", lr, 0.0f, 0.0f});
    sgd->set_penalty_strength(lambda);
    sgd->step(model.parameters());
    const std::vector<Parameter*> params = model.parameters();
    for (size_t i = 0; i < params.size(); ++i)
      for (int64_t k = 0; k < params[i]->value.numel(); ++k) {
        const double c = 2.0 * lr * lambda * params[i]->omega[k];
        const double expect = (before[i][k] + c * params[i]->anchor[k]) / (1.0 + c);
        REQUIRE(params[i]->value[k] == Approx(expect).epsilon(1e-5).margin(1e-6));
      }
  }
}

TEST_CASE("a penalised step leaves masked-out entries unchanged", "[regularizers][penalty]") {
  Sequential model = consolidated_and_moved(4);
  Parameter& w = *model.parameters()[0];  // [3, 4]
  w.mask = UpdateMask::of_rows({1});
  model.parameters()[1]->mask = UpdateMask::none();
  const Tensor w_before = w.value.clone(), b_before = model.parameters()[1]->value.clone();
  auto sgd = make_optimizer(OptimizerOptions{"sgd", 0.1f, 0.9f, 0.0f});
  sgd->set_penalty_strength(1e4f);
  sgd->step(model.parameters());
  for (int64_t k = 0; k < w.value.numel(); ++k) {
    if (k / 4 == 1)
      REQUIRE(w.value[k] != w_before[k]);  // the open row moved towards θ*
    else
      REQUIRE(w.value[k] == w_before[k]);
  }
  REQUIRE(model.parameters()[1]->value.to_vector() == b_before.to_vector());
}

TEST_CASE("no divergence: λ from 0 to 1e8 keeps every loss and weight finite", "[regularizers][penalty]") {
  const Dataset train = test::random_dataset(192, {8}, 3, 21), test_set = test::random_dataset(64, {8}, 3, 22);
  const std::vector<ContinualTask> tasks = make_permuted_tasks(train, test_set, 2, 5);
  ContinualOptions options;
  options.optimizer = OptimizerOptions{"sgd", 0.1f, 0.9f, 0.0f};
  options.batch_size = 32;
  for (const std::string& name : regularizer_names())
    for (float lambda : {0.0f, 1.0f, 1e2f, 1e4f, 1e6f, 1e8f}) {
      Sequential model = build_model("mlp:8-16-3", 7);
      RegularizerOptions ro;
      ro.samples = 64;
      auto reg = make_regularizer(name, ro);
      options.lambda = lambda;
      INFO(name << " lambda " << lambda);
      ContinualResult r;
      REQUIRE_NOTHROW(r = run_continual_tasks(model, tasks, options, reg.get()));  // throws on a non-finite loss
      REQUIRE(std::isfinite(r.final_average));
      for (Parameter* p : model.parameters())
        for (int64_t k = 0; k < p->value.numel(); ++k) REQUIRE(std::isfinite(p->value[k]));
      if (name == "l2" && lambda == 1e8f) {
        // Pinned to θ*: the second task cannot move the model, so task 0 keeps its accuracy.
        REQUIRE(r.accuracy[1][0] == Approx(r.accuracy[0][0]).margin(1.0 / 64));
      }
    }
}
