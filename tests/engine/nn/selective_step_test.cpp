// The selective step (issue #15) against the dense one: a step with update masks (only the open
// rows' gradients, input gradients only in the channels the layers below read, the optimizer and
// zero_grad on open rows only) must equal the dense step (every gradient computed, then the masked
// optimizer step) restricted to the open weights, and leave every closed weight bit for bit. Masks
// as a retraining round builds them, at layer and neuron granularity and several budgets, changing
// between steps; MLP (with and without dropout) and CNN of awkward sizes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "tests/engine/nn/gradient_check.h"

using namespace nnr;
using nnr::test::LabelledBatch;
using nnr::test::random_batch;
using nnr::test::random_tensor;

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Between 1 and `total` rows, drawn uniformly.
int64_t some_rows(int64_t total, Rng& rng) { return 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(total))); }

// `count` distinct rows of [0, total), increasing.
std::vector<int64_t> random_rows(int64_t total, int64_t count, Rng& rng) {
  std::vector<int64_t> all(static_cast<size_t>(total));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t i = 0; i < count; ++i)
    std::swap(all[static_cast<size_t>(i)],
              all[static_cast<size_t>(i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(total - i))))]);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

// One mask per parameter, as a round builds them: the output layer open; every other layer's
// weight and bias share their rows. "neuron": blocks of 3 adjacent rows, each open with
// probability `budget`. "layer": each layer open whole, closed, or (with probability `budget`
// too) open in randomly scattered rows, as a partially filled layer arm is. "mixed": the weight
// open in random rows and its bias open whole or closed, so the two masks differ.
std::vector<UpdateMask> round_masks(Sequential& model, const std::string& granularity, double budget, Rng& rng) {
  std::vector<UpdateMask> masks;
  size_t head = 0;
  for (size_t l = 0; l < model.size(); ++l)
    if (!model.layer(l).parameters().empty()) head = l;
  for (size_t l = 0; l < model.size(); ++l) {
    const std::vector<Parameter*> ps = model.layer(l).parameters();
    if (ps.empty()) continue;
    const int64_t rows = ps[0]->rows();
    UpdateMask weight = UpdateMask::all(), bias = UpdateMask::all();
    if (l != head) {
      if (granularity == "neuron") {
        std::vector<int64_t> open;
        for (int64_t b = 0; b < rows; b += 3)
          if (rng.uniform() < budget)
            for (int64_t r = b; r < std::min(rows, b + 3); ++r) open.push_back(r);
        weight = bias = UpdateMask::of_rows(open);
      } else if (granularity == "layer") {
        const double u = rng.uniform();
        if (u < budget / 2)
          weight = bias = UpdateMask::all();
        else if (u < budget)
          weight = bias = UpdateMask::of_rows(random_rows(rows, some_rows(rows, rng), rng));
        else
          weight = bias = UpdateMask::none();
      } else {
        weight = UpdateMask::of_rows(random_rows(rows, some_rows(rows, rng), rng));
        bias = rng.uniform() < 0.5 ? UpdateMask::all() : UpdateMask::none();
      }
    }
    masks.push_back(weight);
    masks.push_back(bias);
  }
  return masks;
}

void set_masks(Sequential& model, const std::vector<UpdateMask>& masks) {
  const std::vector<Parameter*> ps = model.parameters();
  for (size_t i = 0; i < ps.size(); ++i) ps[i]->mask = masks[i];
}

void forward_backward(Sequential& model, Tape& tape, const LabelledBatch& b) {
  SoftmaxCrossEntropy loss;
  model.zero_grad();
  model.forward(b.x, tape);
  tape.apply_loss(loss, b.y);
  tape.backward();
}

// Steps `selective` with the masks and `dense` with every gradient computed and the same masked
// optimizer step; checks gradients and weights after every step.
void check_against_dense(const std::string& spec, const Shape& input, const std::string& granularity, double budget,
                         const OptimizerOptions& options, uint64_t seed) {
  Sequential selective = build_model(spec, seed), dense = build_model(spec, seed);
  auto selective_opt = make_optimizer(options), dense_opt = make_optimizer(options);
  const std::vector<Parameter*> sp = selective.parameters(), dp = dense.parameters();
  Rng rng(seed + 100);
  const std::vector<UpdateMask> first = round_masks(selective, granularity, budget, rng);
  const std::vector<UpdateMask> second = round_masks(selective, granularity, budget, rng);
  // The same masks twice (zero_grad then clears open rows only), a change, and back.
  const std::vector<const std::vector<UpdateMask>*> schedule{&first, &first, &second, &first};
  Tape selective_tape, dense_tape;
  Shape batch_shape = input;
  for (size_t step = 0; step < schedule.size(); ++step) {
    INFO("step " << step);
    const std::vector<UpdateMask>& masks = *schedule[step];
    const LabelledBatch b = random_batch(batch_shape, 3, seed + 10 * step);
    set_masks(selective, masks);
    forward_backward(selective, selective_tape, b);
    dense.open_all();
    forward_backward(dense, dense_tape, b);
    std::vector<std::vector<float>> before;
    for (Parameter* p : sp) before.push_back(p->value.to_vector());
    for (size_t k = 0; k < sp.size(); ++k) {
      INFO(sp[k]->name);
      const int64_t row_length = sp[k]->row_length();
      for (int64_t i = 0; i < sp[k]->grad.numel(); ++i) {
        if (masks[k].selects_element(i, row_length))
          REQUIRE(sp[k]->grad[i] == Approx(dp[k]->grad[i]).epsilon(1e-4).margin(1e-6));
        else
          REQUIRE(sp[k]->grad[i] == 0.0f);  // backward writes no closed row; zero_grad left it 0
      }
    }
    set_masks(dense, masks);
    selective_opt->step(sp);
    dense_opt->step(dp);
    for (size_t k = 0; k < sp.size(); ++k) {
      INFO(sp[k]->name);
      const int64_t row_length = sp[k]->row_length();
      for (int64_t i = 0; i < sp[k]->value.numel(); ++i) {
        if (masks[k].selects_element(i, row_length)) {
          REQUIRE(sp[k]->value[i] == Approx(dp[k]->value[i]).epsilon(1e-5).margin(1e-6));
        } else {
          // Unchanged by this step (and equal to the dense model's within rounding: open in an
          // earlier step, the two may differ in the last bits).
          REQUIRE(same_bits(sp[k]->value[i], before[k][static_cast<size_t>(i)]));
          REQUIRE(sp[k]->value[i] == Approx(dp[k]->value[i]).epsilon(1e-5).margin(1e-6));
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("a selective step equals the dense step on open weights and leaves closed ones bit for bit",
          "[tape][mask][selective]") {
  const std::vector<std::pair<std::string, Shape>> models{
      {"mlp:37-29-23-5", {11, 37}},
      {"mlp:37-29-23-5:dropout=0.25", {11, 37}},
      {"cnn:2x9x9-c5-p-c7-p-f11-5", {6, 2, 9, 9}}};
  const std::vector<OptimizerOptions> optimizers{{"sgd", 0.05f, 0.9f, 0.001f}, {"adam", 0.01f, 0.0f, 0.0f}};
  uint64_t seed = 1;
  for (const auto& [spec, input] : models)
    for (const std::string granularity : {"layer", "neuron", "mixed"})
      for (const double budget : {0.5, 0.25, 0.1})
        for (const OptimizerOptions& options : optimizers) {
          INFO(spec << ", " << granularity << " " << budget << ", " << options.name << ", seed " << seed);
          check_against_dense(spec, input, granularity, budget, options, seed++);
        }
}

TEST_CASE("backward_channels computes dx in the listed channels as finite differences say, and 0 in the others",
          "[grad][selective]") {
  Rng rng(5);
  Linear linear(29, 6, true, rng);
  Conv2d conv(7, 4, 3, Conv2dGeometry{1, 1}, rng);
  Conv2d strided(7, 4, 3, Conv2dGeometry{2, 1}, rng);
  struct Case {
    Layer* layer;
    Shape x;
    std::vector<int64_t> channels;
  };
  for (const Case& c : {Case{&linear, {5, 29}, {0, 3, 4, 5, 17, 28}}, Case{&linear, {5, 29}, {11}},
                        Case{&conv, {3, 7, 5, 6}, {1, 2, 6}}, Case{&strided, {3, 7, 5, 6}, {0, 4}}}) {
    Layer& layer = *c.layer;
    INFO(layer.describe() << ", " << c.channels.size() << " channels");
    Tensor x = random_tensor(c.x, rng);
    const Tensor y = layer.forward(x, true);
    const Tensor r = random_tensor(y.shape(), rng);
    for (Parameter* p : layer.parameters()) p->grad.zero();
    Tensor dx = Tensor::empty(x.shape());
    dx.fill(123.0f);  // every entry must be written
    layer.backward_channels(x, y, r, dx, c.channels);
    // The parameter gradients are the full backward's.
    std::vector<std::vector<float>> grads;
    for (Parameter* p : layer.parameters()) grads.push_back(p->grad.to_vector());
    for (Parameter* p : layer.parameters()) p->grad.zero();
    Tensor full_dx = Tensor::empty(x.shape());
    layer.backward(x, y, r, &full_dx);
    const std::vector<Parameter*> ps = layer.parameters();
    for (size_t k = 0; k < ps.size(); ++k)
      for (int64_t i = 0; i < ps[k]->grad.numel(); ++i)
        REQUIRE(grads[k][static_cast<size_t>(i)] == Approx(ps[k]->grad[i]).epsilon(1e-5).margin(1e-6));

    const int64_t channels = x.dim(1), inner = x.numel() / (x.dim(0) * channels);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t channel = (i / inner) % channels;
      if (!std::binary_search(c.channels.begin(), c.channels.end(), channel)) {
        REQUIRE(dx[i] == 0.0f);
        continue;
      }
      const float saved = x[i];
      x[i] = saved + test::kStep;
      const double up = test::weighted_sum(layer.forward(x, true), r);
      x[i] = saved - test::kStep;
      const double down = test::weighted_sum(layer.forward(x, true), r);
      x[i] = saved;
      const double numeric = (up - down) / (2.0 * test::kStep);
      INFO("entry " << i << ": numeric " << numeric << ", analytic " << dx[i]);
      REQUIRE(std::abs(numeric - dx[i]) <= test::kTolerance * std::max(1.0, std::abs(numeric)));
      REQUIRE(dx[i] == Approx(full_dx[i]).epsilon(1e-5).margin(1e-6));
    }
    // A list that could index out of the gathers is refused before any work.
    std::vector<int64_t> bad = c.channels;
    bad.push_back(x.dim(1));
    REQUIRE_THROWS_WITH(layer.backward_channels(x, y, r, dx, bad),
                        Catch::Contains("input-gradient channels must increase"));
    REQUIRE_THROWS_AS(layer.backward_channels(x, y, r, dx, {1, 1}), InvalidArgument);
  }
}

TEST_CASE("the tape asks for dx only in the channels the lowest open layer's open rows read", "[tape][selective]") {
  // cnn: 0 Conv2d(2,5), 1 ReLU, 2 MaxPool2d, 3 Conv2d(5,7), 4 ReLU, 5 MaxPool2d, 6 Flatten,
  // 7 Linear(28,11), 8 ReLU, 9 Linear(11,5). Filters {1, 3} of conv 0 open, the rest closed but the
  // head: conv 3 computes dx in channels {1, 3} only and leaves 0 in the others.
  Sequential model = build_model("cnn:2x9x9-c5-p-c7-p-f11-5", 3);
  for (Parameter* p : model.parameters()) p->mask = UpdateMask::none();
  for (Parameter* p : model.layer(0).parameters()) p->mask = UpdateMask::of_rows({1, 3});
  for (Parameter* p : model.layer(9).parameters()) p->mask = UpdateMask::all();
  const LabelledBatch b = random_batch({4, 2, 9, 9}, 5, 4);
  Tape tape;
  std::vector<float> conv3_dx;  // dy of node 2 (the pool) is conv 3's dx after ReLU's mask
  tape.set_observer([&](size_t node, Layer&, const Tensor&, const Tensor&, const Tensor& dy) {
    if (node == 2) conv3_dx = dy.to_vector();
  });
  forward_backward(model, tape, b);
  REQUIRE(conv3_dx.size() == static_cast<size_t>(4 * 5 * 4 * 4));
  int64_t nonzero_open = 0;
  for (size_t i = 0; i < conv3_dx.size(); ++i) {
    const size_t channel = (i / 16) % 5;
    if (channel == 1 || channel == 3)
      nonzero_open += conv3_dx[i] != 0.0f;
    else
      REQUIRE(conv3_dx[i] == 0.0f);
  }
  REQUIRE(nonzero_open > 0);
  // 2·N·O·P·s·K·K with s = 2 of 5 channels: 2·4·7·(4·4)·2·9.
  REQUIRE(model.layer(3).compute_counts().input_grad_flops == 2 * 4 * 7 * 16 * 2 * 9);
}

TEST_CASE("zero_grad clears the open rows under an unchanged Rows mask and whole gradients otherwise",
          "[mask][selective]") {
  Sequential model = build_model("mlp:7-6-3", 2);
  Parameter& w = *model.find_parameter("0.weight");  // [6, 7]
  w.mask = UpdateMask::of_rows({1, 2, 4});
  model.zero_grad();  // first call: whole
  w.grad.fill(3.0f);  // as if written everywhere (only a backward under other masks could)
  model.zero_grad();  // same mask: the open rows only
  for (int64_t i = 0; i < w.grad.numel(); ++i) {
    const int64_t row = i / 7;
    INFO("entry " << i);
    REQUIRE(w.grad[i] == (row == 1 || row == 2 || row == 4 ? 0.0f : 3.0f));
  }
  w.mask = UpdateMask::of_rows({1, 2});  // a new mask: whole
  model.zero_grad();
  for (int64_t i = 0; i < w.grad.numel(); ++i) REQUIRE(w.grad[i] == 0.0f);
  w.grad.fill(5.0f);
  w.mask = UpdateMask::all();  // All: whole, every time
  model.zero_grad();
  w.grad.fill(5.0f);
  model.zero_grad();
  for (int64_t i = 0; i < w.grad.numel(); ++i) REQUIRE(w.grad[i] == 0.0f);
  // A row out of range: the first zero_grad under it clears the whole gradient (no row is
  // indexed, and backward then refuses the mask); the next would index it and refuses it.
  w.mask = UpdateMask::of_rows({6});
  model.zero_grad();
  REQUIRE_THROWS_WITH(model.zero_grad(), Catch::Contains("row 6 outside [0, 6)"));
}
