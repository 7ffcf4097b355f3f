// The one-backward-per-batch statistics (GEMM of squares for Linear, per-sample loop inside the
// backward for Conv2d) against one backward pass per sample, and the neuron importance against
// finite differences of ‖f‖² with the unit scaled.
#include <catch2/catch.hpp>

#include "engine/nn/model_spec.h"
#include "regularizers/gradient_statistics.h"
#include "regularizers/neuron_importance.h"
#include "test_helpers.h"

using namespace nnr;

namespace {

// Float sums over a few dozen samples in two different orders (GEMM blocks vs a per-sample loop
// in double): agreement to 1e-5 of the largest entry is what float accumulation allows.
constexpr double kRelativeTolerance = 1e-5;

void require_close(const Tensor& fast, const std::vector<double>& naive, const std::string& what) {
  REQUIRE(fast.numel() == static_cast<int64_t>(naive.size()));
  double scale = 0.0;
  for (double v : naive) scale = std::max(scale, std::fabs(v));
  REQUIRE(scale > 0.0);
  for (int64_t k = 0; k < fast.numel(); ++k) {
    INFO(what << " entry " << k << ": fast " << fast[k] << " naive " << naive[static_cast<size_t>(k)]);
    REQUIRE(std::fabs(fast[k] - naive[static_cast<size_t>(k)]) <= kRelativeTolerance * scale);
  }
}

void check_against_naive(const std::string& spec, const Shape& sample, OutputGradient target, int64_t batch) {
  Sequential model = build_model(spec, 3);
  const Dataset data = test::random_dataset(37, sample, 3, 11);  // 37: not a multiple of the batch
  GradientStatisticsOptions o;
  o.target = target;
  o.batch_size = batch;
  const GradientStatistics fast = collect_gradient_statistics(model, data, o);
  const test::NaiveStatistics naive = test::naive_gradient_statistics(model, data, target);
  REQUIRE(fast.samples == 37);
  const std::vector<Parameter*> params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    require_close(fast.squared[i], naive.squared[i], spec + " squared " + params[i]->name);
    require_close(fast.absolute[i], naive.absolute[i], spec + " absolute " + params[i]->name);
  }
}

}  // namespace

TEST_CASE("Linear Fisher and MAS sums from one GEMM equal the per-sample loop", "[regularizers][statistics]") {
  check_against_naive("mlp:6-5-4-3", {6}, OutputGradient::TrueLabel, 16);
  check_against_naive("mlp:6-5-4-3", {6}, OutputGradient::OutputNorm, 16);
  check_against_naive("mlp:6-5-4-3", {6}, OutputGradient::OutputNorm, 1);
  check_against_naive("mlp:6-5-4-3", {6}, OutputGradient::TrueLabel, 100);
}

TEST_CASE("Conv2d per-sample statistics equal the per-sample loop", "[regularizers][statistics]") {
  check_against_naive("cnn:2x6x6-c3-p-3", {2, 6, 6}, OutputGradient::TrueLabel, 8);
  check_against_naive("cnn:1x7x7-c2k3s2-c3k1-f4-3", {1, 7, 7}, OutputGradient::OutputNorm, 5);
}

TEST_CASE("estimation restores the callers' masks and leaves gradients zeroed", "[regularizers][statistics]") {
  Sequential model = build_model("mlp:4-3-2", 1);
  const Dataset data = test::random_dataset(10, {4}, 2, 2);
  model.parameters()[0]->mask = UpdateMask::of_rows({1});
  model.parameters()[3]->mask = UpdateMask::none();
  const GradientStatistics s = collect_gradient_statistics(model, data, GradientStatisticsOptions{});
  // Every parameter was measured, frozen ones included ...
  for (const Tensor& t : s.absolute) REQUIRE(test::squared_norm(t) > 0.0);
  // ... and the masks are back.
  REQUIRE(model.parameters()[0]->mask.kind == UpdateMask::Kind::Rows);
  REQUIRE(model.parameters()[0]->mask.rows == std::vector<int64_t>{1});
  REQUIRE(model.parameters()[3]->mask.selects_none());
  REQUIRE(model.parameters()[1]->mask.selects_all());
  for (Parameter* p : model.parameters()) REQUIRE(test::squared_norm(p->grad) == 0.0);
}

TEST_CASE("a subset estimate reads exactly the requested number of samples", "[regularizers][statistics]") {
  Sequential model = build_model("mlp:4-3-2", 1);
  const Dataset data = test::random_dataset(50, {4}, 2, 2);
  GradientStatisticsOptions o;
  o.samples = 17;
  o.batch_size = 5;
  REQUIRE(collect_gradient_statistics(model, data, o).samples == 17);
  o.samples = 0;
  REQUIRE(collect_gradient_statistics(model, data, o).samples == 50);
  const Dataset empty = test::random_dataset(0, {4}, 2, 2);
  const GradientStatistics none = collect_gradient_statistics(model, empty, o);
  REQUIRE(none.samples == 0);
  REQUIRE(test::squared_norm(none.squared[0]) == 0.0);
}

TEST_CASE("the empirical Fisher refuses unlabelled data", "[regularizers][statistics]") {
  Sequential model = build_model("mlp:4-2", 1);
  Dataset data;
  data.features = Tensor({3, 4});
  GradientStatisticsOptions o;
  o.target = OutputGradient::TrueLabel;
  REQUIRE_THROWS_WITH(collect_gradient_statistics(model, data, o), Catch::StartsWith("[regularizer]"));
}

TEST_CASE("neuron importance equals finite differences of the output norm with the unit scaled",
          "[regularizers][neuron]") {
  // With the downstream ReLUs fixed, f is linear in the unit's scale and ‖f‖² quadratic, so central
  // differences are exact but for float rounding: ~1e-7 / ε of ‖f‖² per sample with ε = 1e-2.
  constexpr double kFiniteDifferenceTolerance = 2e-3;
  for (const auto& [spec, sample] : std::vector<std::pair<std::string, Shape>>{
           {"mlp:5-6-4-3", {5}}, {"cnn:1x6x6-c3-p-f4-3", {1, 6, 6}}}) {
    Sequential model = build_model(spec, 5);
    const Dataset data = test::random_dataset(9, sample, 3, 8);
    NeuronImportanceOptions o;
    o.batch_size = 4;
    const std::vector<Tensor> fast = estimate_neuron_importance(model, data, o);
    for (size_t l = 0; l < model.size(); ++l) {
      if (model.layer(l).parameters().empty()) {
        REQUIRE_FALSE(fast[l].defined());
        continue;
      }
      REQUIRE(fast[l].numel() == model.layer(l).parameters()[0]->rows());
      for (int64_t u = 0; u < fast[l].numel(); ++u) {
        const double naive = test::naive_neuron_importance(model, data, l, u, 1e-2f) / 9.0;
        INFO(spec << " layer " << l << " unit " << u);
        REQUIRE(fast[l][u] == Approx(naive).epsilon(kFiniteDifferenceTolerance).margin(1e-5));
      }
    }
  }
}

TEST_CASE("input producers follow the parametric layers through ReLU, pooling and flatten",
          "[regularizers][neuron]") {
  Sequential mlp = build_model("mlp:4-3-3-2", 0);  // Linear ReLU Linear ReLU Linear
  REQUIRE(input_producers(mlp) == std::vector<int64_t>{-1, -1, 0, -1, 2});
  Sequential cnn = build_model("cnn:1x4x4-c2-p-3", 0);  // Conv ReLU Pool Flatten Linear
  REQUIRE(input_producers(cnn) == std::vector<int64_t>{-1, -1, -1, -1, 0});
}
