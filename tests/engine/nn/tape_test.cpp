#include <catch2/catch.hpp>

#include "engine/core/rng.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "tests/engine/nn/gradient_check.h"

using namespace nnr;
using nnr::test::random_tensor;

namespace {

using Batch = nnr::test::LabelledBatch;
using nnr::test::backprop;
using nnr::test::random_batch;

double loss_of(Sequential& model, const Batch& b) {
  SoftmaxCrossEntropy loss;
  return loss.forward(model.forward(b.x), b.y);
}


}  // namespace

TEST_CASE("tape backward through a whole CNN matches finite differences of the loss", "[tape][grad]") {
  Sequential model = build_model("cnn:3x6x5-c4-p-f6-5", 3);
  const Batch b = random_batch({3, 3, 6, 5}, 5, 4);
  backprop(model, b);
  for (Parameter* p : model.parameters()) {
    INFO(p->name);
    for (int64_t i = 0; i < p->value.numel(); i += 3) {
      const float saved = p->value[i];
      // A smaller step than the per-layer checks: through ReLU and max-pool a 1e-2 step can
      // cross a kink; the float rounding of a 1e-3 central difference is about 1e-4.
      p->value[i] = saved + 1e-3f;
      const double up = loss_of(model, b);
      p->value[i] = saved - 1e-3f;
      const double down = loss_of(model, b);
      p->value[i] = saved;
      const double numeric = (up - down) / 2e-3;
      REQUIRE(std::abs(numeric - p->grad[i]) <= 1e-2 * std::max(1.0, std::abs(numeric)));
    }
  }
}

TEST_CASE("a Rows mask computes exactly the open rows of the full gradient and leaves the rest zero", "[tape][mask]") {
  for (const char* spec : {"mlp:12-9-7-4", "cnn:2x5x5-c5-f7-4"}) {
    INFO(spec);
    Sequential full = build_model(spec, 9), masked = build_model(spec, 9);
    const Batch b = random_batch(masked.spec()[0] == 'm' ? Shape{5, 12} : Shape{5, 2, 5, 5}, 4, 10);
    backprop(full, b);
    for (Parameter* p : masked.parameters()) p->mask = UpdateMask::of_rows({0, 2, 3});
    backprop(masked, b);
    auto fp = full.parameters(), mp = masked.parameters();
    for (size_t k = 0; k < fp.size(); ++k) {
      const int64_t row_length = fp[k]->row_length();
      for (int64_t i = 0; i < fp[k]->grad.numel(); ++i) {
        const int64_t row = i / row_length;
        if (row == 0 || row == 2 || row == 3)
          REQUIRE(mp[k]->grad[i] == Approx(fp[k]->grad[i]).margin(1e-6));
        else
          REQUIRE(mp[k]->grad[i] == 0.0f);
      }
    }
  }
}

TEST_CASE("frozen lower layers get no gradient work and backprop stops above them", "[tape][mask]") {
  Sequential model = build_model("mlp:6-5-4-3", 1);  // layers 0 Linear, 1 ReLU, 2 Linear, 3 ReLU, 4 Linear
  for (Parameter* p : model.parameters())
    if (p->name[0] == '0') p->mask = UpdateMask::none();
  const Batch b = random_batch({4, 6}, 3, 2);
  Tape tape;
  std::vector<size_t> visited;
  tape.set_observer([&](size_t node, Layer&, const Tensor&, const Tensor&, const Tensor&) { visited.push_back(node); });
  SoftmaxCrossEntropy loss;
  model.zero_grad();
  // Poison the frozen gradients: a backward that touched them would change the poison.
  model.find_parameter("0.weight")->grad.fill(7.0f);
  model.forward(b.x, tape);
  tape.apply_loss(loss, b.y);
  tape.backward();
  REQUIRE(visited == std::vector<size_t>{4, 3, 2});
  for (int64_t i = 0; i < 30; ++i) REQUIRE(model.find_parameter("0.weight")->grad[i] == 7.0f);
  REQUIRE(model.find_parameter("0.bias")->grad[0] == 0.0f);
}

TEST_CASE("tape reports misuse clearly", "[tape]") {
  Tape tape;
  REQUIRE_THROWS_WITH(tape.backward(), Catch::Contains("needs a loss"));
  Sequential model = build_model("mlp:3-2", 1);
  Tensor x({2, 3});
  model.forward(x, tape);
  REQUIRE_THROWS_WITH(tape.backward_from(Tensor({2, 5})), Catch::Contains("expected shape [2, 2]"));
}

TEST_CASE("a small MLP learns a synthetic separable problem", "[tape][learning]") {
  // Two Gaussian blobs per class in 10-D, 4 classes: a linear-ish problem an MLP must solve.
  Rng rng(21);
  const int64_t n = 400;
  Tensor centers = random_tensor({4, 10}, rng, 2.0f);
  Batch data{Tensor({n, 10}), {}};
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = static_cast<int32_t>(i % 4);
    data.y.push_back(c);
    for (int64_t j = 0; j < 10; ++j) data.x[i * 10 + j] = centers[c * 10 + j] + static_cast<float>(rng.normal()) * 0.5f;
  }
  Sequential model = build_model("mlp:10-16-4", 5);
  auto optimizer = make_optimizer({"sgd", 0.1f, 0.9f, 0.0f});
  const double before = loss_of(model, data);
  for (int epoch = 0; epoch < 30; ++epoch) {
    backprop(model, data);
    optimizer->step(model.parameters());
  }
  const double after = loss_of(model, data);
  const Tensor logits = model.forward(data.x);
  int correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t k = 1; k < 4; ++k)
      if (logits[i * 4 + k] > logits[i * 4 + best]) best = k;
    correct += best == data.y[static_cast<size_t>(i)];
  }
  REQUIRE(after < 0.25 * before);
  REQUIRE(correct >= 0.95 * n);
}
