// Each estimator on tiny networks whose importance can be worked out by hand, the consolidation
// rule, SNI's combination, and the factory.
#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "regularizers/mas.h"
#include "regularizers/neuron_importance.h"
#include "regularizers/regularizer.h"
#include "regularizers/sni.h"
#include "test_helpers.h"

using namespace nnr;

namespace {

// Hand values are exact in float up to a few ulps of the sums.
constexpr float kHandTolerance = 1e-5f;

Dataset two_samples() {
  return make_dataset(Tensor::from_vector({2, 2}, {1, 2, 3, -1}), {0, 1}, 2, "two samples");
}

void set(Parameter& p, const std::vector<float>& v) { p.value = Tensor::from_vector(p.value.shape(), v); }

}  // namespace

TEST_CASE("EWC: Fisher of a zero-initialised softmax layer by hand, empirical and sampled", "[regularizers][ewc]") {
  for (bool sampled : {false, true}) {
    Sequential model = build_model("mlp:2-2", 0);
    set(*model.parameters()[0], {0, 0, 0, 0});
    // p = (1/2, 1/2) whatever x is, so g_W = ±x/2 for any label: F_W[r][j] = mean_n x_nj² / 4.
    RegularizerOptions o;
    o.sampled_fisher = sampled;
    o.samples = 0;
    auto ewc = make_regularizer("ewc", o);
    const std::vector<Tensor> f = ewc->estimate(model, two_samples());
    const std::vector<float> expect_w{1.25f, 0.625f, 1.25f, 0.625f};  // (1+9)/8, (4+1)/8
    for (int k = 0; k < 4; ++k) REQUIRE(f[0][k] == Approx(expect_w[k]).epsilon(kHandTolerance));
    REQUIRE(f[1][0] == Approx(0.25f));
    REQUIRE(f[1][1] == Approx(0.25f));
  }
}

TEST_CASE("MAS: mean |d||f||^2/dθ| of a one-output linear model by hand", "[regularizers][mas]") {
  Sequential model = build_model("mlp:2-1", 0);
  set(*model.parameters()[0], {1, -1});
  set(*model.parameters()[1], {0.5f});
  // f = x0 − x1 + 0.5: −0.5 and 4.5. dW = 2 f x: (−1, −2) and (27, −9); db = 2 f: −1 and 9.
  RegularizerOptions o;
  o.samples = 0;
  const std::vector<Tensor> m = make_regularizer("mas", o)->estimate(model, two_samples());
  REQUIRE(m[0][0] == Approx(14.0f).epsilon(kHandTolerance));
  REQUIRE(m[0][1] == Approx(5.5f).epsilon(kHandTolerance));
  REQUIRE(m[1][0] == Approx(5.0f).epsilon(kHandTolerance));
}

TEST_CASE("SI: path integral and importance on a 2-parameter quadratic match the closed form", "[regularizers][si]") {
  // L = ½ Σ a_i θ_i², θ_0 = 1, plain SGD with step η: θ_k = (1 − η a)^k, g_k = a θ_k,
  // ω = Σ_k −g_k Δθ_k = η a² Σ_{k<K} (1 − η a)^{2k}, Ω = ω / ((θ_K − 1)² + ξ).
  const float eta = 0.1f, xi = 0.1f;
  const int steps = 20;
  const double a[2] = {1.0, 4.0};
  Sequential model = build_model("mlp:1-2", 0);
  Parameter& w = *model.parameters()[0];
  set(w, {1, 1});
  RegularizerOptions o;
  o.si_damping = xi;
  auto si = make_regularizer("si", o);
  si->begin_task(model);
  auto sgd = make_optimizer(OptimizerOptions{"sgd", eta, 0.0f, 0.0f});
  for (int k = 0; k < steps; ++k) {
    model.zero_grad();
    for (int i = 0; i < 2; ++i) w.grad[i] = static_cast<float>(a[i] * w.value[i]);
    sgd->step(model.parameters());
  }
  si->consolidate(model, Dataset{});
  for (int i = 0; i < 2; ++i) {
    const double r = (1.0 - eta * a[i]) * (1.0 - eta * a[i]);
    const double omega_path = eta * a[i] * a[i] * (1.0 - std::pow(r, steps)) / (1.0 - r);
    const double theta_k = std::pow(1.0 - eta * a[i], steps);
    REQUIRE(w.path_integral[i] == Approx(omega_path).epsilon(1e-5));
    REQUIRE(w.value[i] == Approx(theta_k).epsilon(1e-5));
    REQUIRE(w.omega[i] == Approx(omega_path / ((theta_k - 1.0) * (theta_k - 1.0) + xi)).epsilon(1e-5));
    REQUIRE(w.anchor[i] == w.value[i]);
  }
  // The bias never moved: no path, no importance.
  REQUIRE(model.parameters()[1]->omega[0] == 0.0f);
}

TEST_CASE("SI refuses to consolidate without begin_task", "[regularizers][si]") {
  Sequential model = build_model("mlp:1-2", 0);
  REQUIRE_THROWS_WITH(make_regularizer("si")->consolidate(model, Dataset{}), Catch::StartsWith("[regularizer] si"));
}

TEST_CASE("L2 keeps Ω = 1 and moves the anchor to θ every round", "[regularizers][l2]") {
  Sequential model = build_model("mlp:3-2", 0);
  auto l2 = make_regularizer("l2");
  for (int round = 0; round < 2; ++round) {
    model.parameters()[0]->value[0] += 1.0f;
    l2->consolidate(model, Dataset{});
    for (Parameter* p : model.parameters())
      for (int64_t k = 0; k < p->value.numel(); ++k) {
        REQUIRE(p->omega[k] == 1.0f);
        REQUIRE(p->anchor[k] == p->value[k]);
      }
  }
}

TEST_CASE("consolidation: Ω ← γΩ + Ω_new, the weighted-mean anchor sums one penalty per round",
          "[regularizers][consolidation]") {
  Parameter p;
  p.name = "w";
  p.value = Tensor::from_vector({2}, {4, -1});
  std::vector<Parameter*> params{&p};
  std::vector<Tensor> first;
  first.push_back(Tensor::from_vector({2}, {1, 2}));
  consolidate_importance(params, std::move(first), 0.5f, AnchorRule::Latest);  // first round: Ω = new
  REQUIRE(p.omega.to_vector() == std::vector<float>{1, 2});
  REQUIRE(p.anchor.to_vector() == std::vector<float>{4, -1});

  p.value = Tensor::from_vector({2}, {6, 3});
  std::vector<Tensor> second;
  second.push_back(Tensor::from_vector({2}, {3, 0}));
  consolidate_importance(params, std::move(second), 0.5f, AnchorRule::Latest);
  REQUIRE(p.omega.to_vector() == std::vector<float>{3.5f, 1.0f});
  REQUIRE(p.anchor.to_vector() == std::vector<float>{6, 3});

  // Weighted mean: Ω1 (θ − θ1)² + Ω2 (θ − θ2)² has the gradient of (Ω1 + Ω2)(θ − θ̄).
  Parameter q;
  q.value = Tensor::from_vector({1}, {0});
  std::vector<Parameter*> qs{&q};
  std::vector<Tensor> r1, r2;
  r1.push_back(Tensor::from_vector({1}, {1}));
  r2.push_back(Tensor::from_vector({1}, {3}));
  consolidate_importance(qs, std::move(r1), 1.0f, AnchorRule::WeightedMean);
  q.value[0] = 4.0f;
  consolidate_importance(qs, std::move(r2), 1.0f, AnchorRule::WeightedMean);
  REQUIRE(q.omega[0] == 4.0f);
  REQUIRE(q.anchor[0] == 3.0f);
  for (float theta : {-2.0f, 0.5f, 7.0f}) {
    const double separate = 2.0 * 1.0 * (theta - 0.0) + 2.0 * 3.0 * (theta - 4.0);
    const double combined = 2.0 * q.omega[0] * (theta - q.anchor[0]);
    REQUIRE(combined == Approx(separate));
  }
}

TEST_CASE("SNI combines normalised synapse and neuron importance with its option weights", "[regularizers][sni]") {
  Sequential model = build_model("mlp:3-4-3-2", 4);
  const Dataset data = test::random_dataset(23, {3}, 2, 6);
  const float a = 1.0f, b = 0.5f, c = 2.0f;
  RegularizerOptions o;
  o.samples = 0;
  o.synapse_weight = a;
  o.neuron_out_weight = b;
  o.neuron_in_weight = c;
  const std::vector<Tensor> omega = make_regularizer("sni", o)->estimate(model, data);

  const std::vector<Tensor> s = Mas(MasOptions{0, 256, 0}, 1.0f).estimate(model, data);
  NeuronImportanceOptions no;
  no.samples = 0;
  const std::vector<Tensor> n = estimate_neuron_importance(model, data, no);
  auto mean = [](const Tensor& t) {
    double m = 0;
    for (int64_t k = 0; k < t.numel(); ++k) m += t[k];
    return m / t.numel();
  };
  // Layers 0, 2, 4 are the Linears; parameters 0..5 their weights and biases.
  const std::vector<int> layer_of_param{0, 0, 2, 2, 4, 4};
  const std::vector<Parameter*> params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const int l = layer_of_param[i];
    const Tensor& nl = n[static_cast<size_t>(l)];
    const int64_t rows = params[i]->rows(), len = params[i]->row_length();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < len; ++j) {
        double expect = a * s[i][r * len + j] / mean(s[i]) + b * nl[r] / mean(nl);
        if (params[i]->value.rank() == 2 && l > 0) {
          const Tensor& np = n[static_cast<size_t>(l - 2)];
          expect += c * np[j] / mean(np);
        }
        INFO(params[i]->name << " [" << r << ", " << j << "]");
        REQUIRE(omega[i][r * len + j] == Approx(expect).epsilon(1e-5));
      }
  }
}

TEST_CASE("SNI maps a Linear's flattened inputs to the conv filter that produced them", "[regularizers][sni]") {
  Sequential model = build_model("cnn:1x4x4-c2-3", 2);  // Conv(1→2, 3x3, pad 1) ReLU Flatten Linear(32, 3)
  const Dataset data = test::random_dataset(12, {1, 4, 4}, 3, 9);
  RegularizerOptions o;
  o.samples = 0;
  o.synapse_weight = 0.0f;
  o.neuron_out_weight = 0.0f;
  o.neuron_in_weight = 1.0f;
  const std::vector<Tensor> omega = make_regularizer("sni", o)->estimate(model, data);
  NeuronImportanceOptions no;
  no.samples = 0;
  const std::vector<Tensor> units = estimate_neuron_importance(model, data, no);
  const Tensor& conv_units = units[0];
  const double m = (conv_units[0] + conv_units[1]) / 2.0;
  const Tensor& w = omega[2];  // the Linear's weight [3, 32]
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t j = 0; j < 32; ++j) REQUIRE(w[r * 32 + j] == Approx(conv_units[j / 16] / m).epsilon(1e-5));
  REQUIRE(test::squared_norm(omega[0]) == 0.0);  // the conv reads pixels: no input neurons
  REQUIRE(test::squared_norm(omega[3]) == 0.0);  // biases have no input
}

TEST_CASE("the factory builds every listed regularizer and names the valid ones on error", "[regularizers][factory]") {
  for (const std::string& name : regularizer_names()) REQUIRE(make_regularizer(name)->name() == name);
  REQUIRE(make_regularizer("online-ewc")->gamma() == Approx(0.9f));
  REQUIRE(make_regularizer("ewc")->anchor_rule() == AnchorRule::WeightedMean);
  REQUIRE_THROWS_WITH(make_regularizer("fisher"),
                      Catch::StartsWith("[regularizer] unknown regularizer 'fisher'") && Catch::Contains("sni"));
  RegularizerOptions o;
  o.synapse = "l1";
  REQUIRE_THROWS_WITH(make_regularizer("sni", o), Catch::StartsWith("[regularizer] sni: unknown synapse"));
  o.synapse = "mas";
  o.neuron_in_weight = -1.0f;
  REQUIRE_THROWS_WITH(make_regularizer("sni", o), Catch::StartsWith("[regularizer] sni"));
  RegularizerOptions bad_gamma;
  bad_gamma.gamma = std::nanf("");
  REQUIRE_THROWS_AS(make_regularizer("mas", bad_gamma), InvalidArgument);
}

TEST_CASE("a regularizer restored with its estimate count draws the subsets the original would", "[regularizers]") {
  Sequential model = build_model("mlp:3-4-3-2", 4);
  const Dataset data = test::random_dataset(200, {3}, 2, 6);
  RegularizerOptions o;
  o.samples = 16;  // a random subset per estimate: the count decides which
  for (const std::string name : {"ewc", "online-ewc", "mas", "sni"}) {
    INFO(name);
    o.sampled_fisher = name == "online-ewc";
    auto original = make_regularizer(name, o);
    original->estimate(model, data);
    original->estimate(model, data);
    REQUIRE(original->estimates_made() == 2);
    const std::vector<Tensor> third = original->estimate(model, data);

    auto restored = make_regularizer(name, o);
    restored->set_estimates_made(2);
    const std::vector<Tensor> again = restored->estimate(model, data);
    auto fresh = make_regularizer(name, o);
    const std::vector<Tensor> first = fresh->estimate(model, data);
    bool differs_from_first = false;
    for (size_t i = 0; i < third.size(); ++i) {
      for (int64_t k = 0; k < third[i].numel(); ++k) {
        REQUIRE(again[i].data()[k] == third[i].data()[k]);
        differs_from_first |= first[i].data()[k] != third[i].data()[k];
      }
    }
    CHECK(differs_from_first);
  }
}
