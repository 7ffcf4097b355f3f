#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "engine/core/error.h"
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

TEST_CASE("without an observer, ReLU and max pooling run backward in one pass: the same gradients, fewer FLOPs",
          "[tape][grad]") {
  // Two conv + ReLU + pool blocks (one with a pool of 3, stride 3, whose windows drop a row), then
  // Linear + ReLU: the pools take the fused path, the last ReLU (below a Linear) the plain one. An
  // observer (even one that does nothing) sees every node's dy, so it turns the fusion off.
  const Batch b = random_batch({5, 2, 11, 13}, 4, 21);
  auto run = [&](bool observed, Sequential& model) {
    Tape tape;
    SoftmaxCrossEntropy loss;
    model.zero_grad();
    if (observed) tape.set_observer([](size_t, Layer&, const Tensor&, const Tensor&, const Tensor&) {});
    std::vector<size_t> finals;
    tape.set_gradients_final([&](size_t node, Layer&) { finals.push_back(node); });
    model.forward(b.x, tape);
    tape.apply_loss(loss, b.y);
    tape.backward();
    return finals;
  };
  const std::string spec = "cnn:2x11x13-c5-p-c4-p3-f6-4";
  Sequential fused = build_model(spec, 9), plain = build_model(spec, 9);
  REQUIRE(fused.layer(1).describe() == "ReLU()");
  REQUIRE(fused.layer(2).describe().find("MaxPool2d") == 0);
  // Every node still reports its gradients final, top to bottom, ReLUs included.
  const std::vector<size_t> fused_finals = run(false, fused), plain_finals = run(true, plain);
  CHECK(fused_finals == plain_finals);
  const std::vector<Parameter*> f = fused.parameters(), p = plain.parameters();
  REQUIRE(f.size() == p.size());
  for (size_t k = 0; k < f.size(); ++k) {
    INFO(f[k]->name);
    REQUIRE(f[k]->grad.to_vector() == p[k]->grad.to_vector());  // bit for bit
  }
  // The ReLUs below a pool count one compare per pooled value instead of one per input element.
  for (const size_t relu : {size_t{1}, size_t{4}}) {
    const int64_t relu_numel = relu == 1 ? 5 * 5 * 11 * 13 : 5 * 4 * 5 * 6;
    const int64_t pooled = relu == 1 ? 5 * 5 * 5 * 6 : 5 * 4 * 1 * 2;
    CHECK(plain.layer(relu).compute_counts().input_grad_flops == relu_numel);
    CHECK(fused.layer(relu).compute_counts().input_grad_flops == pooled);
  }
  CHECK(fused.layer(8).compute_counts().input_grad_flops == plain.layer(8).compute_counts().input_grad_flops);
}

TEST_CASE("backward through a two-conv CNN gives the input gradient of the first conv layer", "[tape][grad]") {
  // The tape never asks the first layer for dx; this walks the layers by hand so that every
  // conv layer (padding 1 and 2, stride 1 and 2) computes its input gradient, and compares
  // dL/dx of the batch input with central differences of the loss.
  Sequential model = build_model("cnn:2x7x6-c3-c4k5s2-f6-4", 5);
  const Batch b = random_batch({2, 2, 7, 6}, 4, 8);
  std::vector<Tensor> acts;
  acts.push_back(b.x.clone());
  for (size_t i = 0; i < model.size(); ++i) acts.push_back(model.layer(i).forward(acts.back(), true));
  SoftmaxCrossEntropy loss;
  loss.forward(acts.back(), b.y);
  Tensor grad = Tensor::empty(acts.back().shape());
  loss.backward(grad);
  model.zero_grad();
  for (size_t i = model.size(); i-- > 0;) {
    Tensor dx = Tensor::empty(acts[i].shape());
    model.layer(i).backward(acts[i], acts[i + 1], grad, &dx);
    grad = std::move(dx);
  }
  REQUIRE(model.layer(0).describe().find("Conv2d") == 0);
  Tensor x = b.x.clone();
  auto loss_at = [&]() {
    SoftmaxCrossEntropy l;
    return l.forward(model.forward(x), b.y);
  };
  double largest = 0.0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float saved = x[i];
    x[i] = saved + 1e-3f;
    const double up = loss_at();
    x[i] = saved - 1e-3f;
    const double down = loss_at();
    x[i] = saved;
    const double numeric = (up - down) / 2e-3;
    largest = std::max(largest, std::abs(numeric));
    INFO("input entry " << i << ": numeric " << numeric << ", analytic " << grad[i]);
    REQUIRE(std::abs(numeric - grad[i]) <= 1e-2 * std::max(1.0, std::abs(numeric)));
  }
  REQUIRE(largest > 1e-2);  // the input gradient is not trivially zero
  // Border pixels (where padding matters) get gradient too.
  REQUIRE(grad[0] != 0.0f);
}

TEST_CASE("a bad Rows mask is refused with nnr::InvalidArgument before backward reads it", "[tape][mask]") {
  for (const char* spec : {"mlp:6-5-3", "cnn:2x5x5-c4-f5-3"}) {
    for (const auto& [rows, message] :
         std::vector<std::pair<std::vector<int64_t>, std::string>>{{{0, 9}, "row 9 outside [0, "},
                                                                   {{-1, 1}, "row -1 outside [0, "},
                                                                   {{1, 1}, "not strictly increasing"},
                                                                   {{2, 0}, "not strictly increasing"}}) {
      for (const char* target : {"0.weight", "0.bias"}) {
        INFO(spec << " " << target << " " << message);
        Sequential model = build_model(spec, 3);
        const Batch b = random_batch(spec[0] == 'm' ? Shape{4, 6} : Shape{4, 2, 5, 5}, 3, 1);
        Parameter* p = model.find_parameter(target);
        REQUIRE(p);
        p->mask.kind = UpdateMask::Kind::Rows;  // set by hand: of_rows would sort and de-duplicate
        p->mask.rows = rows;
        model.zero_grad();
        p->grad.fill(5.0f);
        SoftmaxCrossEntropy loss;
        Tape tape;
        model.forward(b.x, tape);
        tape.apply_loss(loss, b.y);
        std::string what;
        try {
          tape.backward();
        } catch (const InvalidArgument& e) {
          what = e.what();
        }
        REQUIRE_THAT(what, Catch::Contains("[update mask] " + std::string(target)) && Catch::Contains(message));
        // Refused before any gradient of that layer was touched.
        for (int64_t i = 0; i < p->grad.numel(); ++i) REQUIRE(p->grad[i] == 5.0f);
      }
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
