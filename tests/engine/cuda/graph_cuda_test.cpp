// GraphedTrainStep (apps/trainer/graphed_step.h): training steps replayed from one recorded CUDA
// graph against the same steps run eagerly on the same GPU, from the same seed.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "apps/trainer/graphed_step.h"
#include "tests/engine/cuda/cuda_test_util.h"
#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/loss.h"
#include "engine/nn/model_spec.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"
#include "kernels/cuda/device_memory.h"

using namespace nnr;
using nnr::test::relative_frobenius;

namespace {

// Why 1e-6 (MLP): both runs queue the same kernels with the same arguments in the same order on
// one device; the step scalars a replay reads are the floats the eager launch computes (a kernel
// test checks that bit for bit). What may differ is the order of atomic additions in reductions,
// worth a few ulps per step. Why 1e-4 (CNN): cuDNN's backward-filter algorithms may also reorder
// their sums from run to run; 1e-4 is the bound the GPU-against-CPU CNN tests use. A real fault (a
// stale input, a frozen learning rate, a lost update) moves parameters by O(lr·g) ≈ 1e-2.
constexpr double kMlpRel = 1e-6;
constexpr double kCnnRel = 1e-4;

Batch random_batch(const Shape& shape, int32_t classes, Rng& rng) {
  Batch b;
  b.x = Tensor(shape);
  for (int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < shape[0]; ++i) {
    b.y.push_back(static_cast<int32_t>(rng.uniform() * classes) % classes);
    b.indices.push_back(i);
  }
  return b;
}

double eager_step(Sequential& model, Optimizer& opt, Tape& tape, SoftmaxCrossEntropy& xent, const Batch& b,
                  Context& ctx) {
  const Tensor x = b.x.to(Device::CUDA, ctx);
  model.zero_grad();
  model.forward(x, tape);
  const double loss = tape.apply_loss(xent, b.y);
  tape.backward();
  opt.step(model.parameters());
  return loss;
}

void require_same_parameters(Sequential& graphed, Sequential& eager, double rel) {
  const std::vector<Parameter*> a = graphed.parameters(), b = eager.parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = relative_frobenius(a[i]->value.to_cpu(), b[i]->value.to_cpu());
    INFO(a[i]->name << ": relative Frobenius difference " << diff);
    REQUIRE(diff <= rel);
  }
}

float cosine_lr(float base, int step, int steps) {
  return static_cast<float>(0.5 * base * (1.0 + std::cos(3.14159265358979 * step / steps)));
}

}  // namespace

TEST_CASE("an MLP trained by replaying one CUDA graph follows the eager GPU run (Adam, cosine learning rate)",
          "[cuda][graph]") {
  Context ctx;
  Sequential graphed = build_model("mlp:12-32-5", 11), eager = build_model("mlp:12-32-5", 11);
  graphed.to(Device::CUDA, ctx);
  eager.to(Device::CUDA, ctx);
  Adam graphed_opt(AdamConfig{}), eager_opt(AdamConfig{});
  GraphedTrainStep step(graphed, graphed_opt, ctx);
  Tape tape;
  SoftmaxCrossEntropy xent;
  Rng rng(3);
  constexpr int kSteps = 20;
  int64_t mallocs_after_recording = -1;
  double first_loss = 0.0, last_loss = 0.0;
  const Batch fixed = random_batch({63, 12}, 5, rng);  // one batch again and again: the loss must fall
  for (int s = 0; s < kSteps; ++s) {
    const float lr = cosine_lr(0.01f, s, kSteps);
    graphed_opt.set_learning_rate(lr);
    eager_opt.set_learning_rate(lr);
    const Batch fresh = random_batch({63, 12}, 5, rng);
    const Batch& b = s % 2 ? fresh : fixed;  // new inputs and labels reach every replay
    double graphed_loss = 0.0;
    REQUIRE(step.step(b, graphed_loss));
    const double eager_loss = eager_step(eager, eager_opt, tape, xent, b, ctx);
    INFO("step " << s << ": graphed loss " << graphed_loss << ", eager loss " << eager_loss);
    REQUIRE(std::fabs(graphed_loss - eager_loss) <= kMlpRel * std::fabs(eager_loss));
    if (s == 0) first_loss = graphed_loss;
    if (s % 2 == 0) last_loss = graphed_loss;
    if (s == 1) mallocs_after_recording = ctx.allocator().stats().malloc_calls;
  }
  REQUIRE(last_loss < first_loss);
  require_same_parameters(graphed, eager, kMlpRel);
  const GraphedTrainStep::Counts counts = step.counts();
  REQUIRE(counts.warmups == 1);
  REQUIRE(counts.recordings == 1);
  REQUIRE(counts.replays == kSteps - 2);
  REQUIRE(ctx.allocator().stats().malloc_calls == mallocs_after_recording);  // replays allocate nothing

  // A batch of another shape is left to the caller, and the state stays consistent for it.
  const Batch partial = random_batch({17, 12}, 5, rng);
  double unused = 0.0;
  REQUIRE_FALSE(step.step(partial, unused));
  eager_step(graphed, graphed_opt, tape, xent, partial, ctx);
  eager_step(eager, eager_opt, tape, xent, partial, ctx);
  require_same_parameters(graphed, eager, kMlpRel);
  REQUIRE(graphed_opt.state(*graphed.parameters()[0])->step == kSteps + 1);
}

TEST_CASE("a CNN trained from a CUDA graph records again after a partial batch and a mask change, masked weights stay",
          "[cuda][graph]") {
  Context ctx;
  const std::string spec = "cnn:2x8x7-c6-p-f13-5";
  Sequential graphed = build_model(spec, 5), eager = build_model(spec, 5);
  for (Sequential* m : {&graphed, &eager}) {
    for (Parameter* p : m->parameters()) {  // the importance penalty on, as in a retraining round
      p->anchor = p->value.clone();
      p->omega = Tensor(p->value.shape());
      p->omega.fill(0.5f);
    }
    m->to(Device::CUDA, ctx);
  }
  SgdConfig config;
  config.lr = 0.05f;
  config.momentum = 0.9f;
  Sgd graphed_opt(config), eager_opt(config);
  graphed_opt.set_penalty_strength(0.1f);
  eager_opt.set_penalty_strength(0.1f);
  GraphedTrainStep step(graphed, graphed_opt, ctx);
  Tape tape;
  SoftmaxCrossEntropy xent;
  Rng rng(9);
  Tensor conv_before_mask;
  for (int s = 0; s < 8; ++s) {
    if (s == 4) {  // the bandit's weight selection changes: three filters and some neurons open
      for (Sequential* m : {&graphed, &eager}) {
        m->parameters()[0]->mask = UpdateMask::of_rows({0, 2, 5});
        m->parameters()[2]->mask = UpdateMask::of_rows({1, 4, 12});
      }
      conv_before_mask = graphed.parameters()[0]->value.to_cpu();
    }
    const Batch b = random_batch({9, 2, 8, 7}, 5, rng);
    double graphed_loss = 0.0;
    REQUIRE(step.step(b, graphed_loss));
    const double eager_loss = eager_step(eager, eager_opt, tape, xent, b, ctx);
    INFO("step " << s);
    REQUIRE(std::fabs(graphed_loss - eager_loss) <= kCnnRel * std::fabs(eager_loss));
    if (s == 2) {
      // A smaller batch between replays runs eagerly: it replaces MaxPool2d's argmax buffer, which
      // the recording wrote, so the recording must be dropped and made again.
      const Batch partial = random_batch({4, 2, 8, 7}, 5, rng);
      double unused = 0.0;
      REQUIRE_FALSE(step.step(partial, unused));
      eager_step(graphed, graphed_opt, tape, xent, partial, ctx);
      eager_step(eager, eager_opt, tape, xent, partial, ctx);
    }
  }
  require_same_parameters(graphed, eager, kCnnRel);
  // Steps 0-2: warm-up, recording, replay; 3: warm-up after the partial batch; 4: warm-up after
  // the mask change; 5: recording; 6-7: replays.
  const GraphedTrainStep::Counts counts = step.counts();
  REQUIRE(counts.warmups == 3);
  REQUIRE(counts.recordings == 2);
  REQUIRE(counts.replays == 3);
  // Filters 1, 3 and 4 were closed for the last four steps: their weights kept their bits.
  const Tensor conv_after = graphed.parameters()[0]->value.to_cpu();
  const int64_t per_filter = conv_after.numel() / conv_after.dim(0);
  for (const int64_t filter : {1, 3, 4})
    for (int64_t j = 0; j < per_filter; ++j) {
      const float a = conv_after[filter * per_filter + j], b = conv_before_mask[filter * per_filter + j];
      REQUIRE(std::memcmp(&a, &b, sizeof(float)) == 0);
    }
}

TEST_CASE("a graphed step refuses dropout and labels outside the model's classes", "[cuda][graph]") {
  Context ctx;
  Sequential with_dropout = build_model("mlp:12-16-5:dropout=0.5", 1);
  with_dropout.to(Device::CUDA, ctx);
  Sgd opt(SgdConfig{});
  try {
    GraphedTrainStep step(with_dropout, opt, ctx);
    FAIL("a model with dropout was accepted");
  } catch (const InvalidArgument& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("dropout") && Catch::Contains("without --cuda-graph"));
  }

  Sequential mlp = build_model("mlp:12-16-5", 1);
  mlp.to(Device::CUDA, ctx);
  GraphedTrainStep step(mlp, opt, ctx);
  Rng rng(1);
  Batch b = random_batch({8, 12}, 5, rng);
  b.y[3] = 5;
  double loss = 0.0;
  REQUIRE_THROWS_WITH(step.step(b, loss), Catch::Contains("label 5 at row 3 outside [0, 5)"));
  REQUIRE(step.counts().warmups == 0);
}
