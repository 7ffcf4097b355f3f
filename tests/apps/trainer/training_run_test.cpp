// run_training, the loop of `nnr train`: every epoch runs, the schedule takes the rate from the
// optimizer's to near 0 (cosine) or keeps it (constant), the run is deterministic in its seed, and
// a CUDA graph without a CUDA context is refused before any step.
#include <catch2/catch.hpp>

#include "apps/trainer/training_run.h"
#include "engine/core/error.h"
#include "engine/nn/model_spec.h"
#include "engine/optim/optimizer.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;

namespace {

struct Run {
  TrainingRunResult result;
  float final_lr = 0.0f;
};

Run train(const std::string& schedule, uint64_t seed, int epochs = 3) {
  const Dataset data = test::separable_dataset(160, 11);
  Sequential model = build_model("mlp:16-32-10", 3);
  auto optimizer = make_optimizer({"sgd", 0.05f, 0.9f, 0.0f});
  TrainingRunOptions o;
  o.epochs = epochs;
  o.batch_size = 16;
  o.schedule = schedule;
  o.seed = seed;
  Run r;
  r.result = run_training(model, *optimizer, data, o);
  r.final_lr = optimizer->learning_rate();
  return r;
}

}  // namespace

TEST_CASE("default learning rates: adam 0.002, sgd 0.05", "[training_run]") {
  CHECK(default_learning_rate("adam") == 0.002f);
  CHECK(default_learning_rate("sgd") == 0.05f);
}

TEST_CASE("run_training runs every epoch under the schedule and learns", "[training_run]") {
  const Run cosine = train("cosine", 1);
  REQUIRE(cosine.result.epochs.size() == 3);
  CHECK(cosine.result.steps == 3 * 10);  // 160 samples in batches of 16
  for (const EpochResult& e : cosine.result.epochs) CHECK(e.samples == 160);
  CHECK(cosine.result.epochs.back().loss < 0.5 * cosine.result.epochs.front().loss);
  CHECK(cosine.final_lr > 0.0f);
  CHECK(cosine.final_lr < 0.01f * 0.05f);  // the last step's rate of a half cosine over 30 steps
  CHECK_FALSE(cosine.result.graph);
  CHECK(cosine.result.bytes_all_reduced == 0);

  const Run constant = train("constant", 1);
  CHECK(constant.final_lr == 0.05f);
  CHECK(constant.result.epochs.back().loss != cosine.result.epochs.back().loss);
}

TEST_CASE("run_training is deterministic in its seed", "[training_run]") {
  const Run a = train("cosine", 5, 2), b = train("cosine", 5, 2), c = train("cosine", 6, 2);
  for (size_t e = 0; e < 2; ++e) CHECK(a.result.epochs[e].loss == b.result.epochs[e].loss);
  CHECK(a.result.epochs[0].loss != c.result.epochs[0].loss);  // another shuffle
}

TEST_CASE("run_training refuses a CUDA graph without a CUDA context", "[training_run]") {
  const Dataset data = test::separable_dataset(32, 1);
  Sequential model = build_model("mlp:16-8-10", 1);
  auto optimizer = make_optimizer({"sgd", 0.05f, 0.9f, 0.0f});
  TrainingRunOptions o;
  o.cuda_graph = true;
  CHECK_THROWS_AS(run_training(model, *optimizer, data, o), InvalidArgument);
}
