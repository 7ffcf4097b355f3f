// The non-finite guard of a retraining round: check_finite_parameters finds NaN and Inf in the
// entries it is asked about (only the open ones with open_only), and a round stops with a
// NonFiniteError naming round, step and parameter when a weight or the loss stops being finite.
#include <cmath>
#include <limits>
#include <string>

#include <catch2/catch.hpp>

#include "apps/trainer/retraining.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/model_spec.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;

namespace {

// Ten separable classes in 16 features (class c lights feature c), times `scale`.
Dataset synthetic(int64_t n, uint64_t seed, float scale = 1.0f) {
  return test::class_dataset(n, seed, [scale](float* row, int c, Rng& rng) {
    for (int k = 0; k < 16; ++k) row[k] = scale * static_cast<float>((k == c ? 2.0 : 0.0) + 0.3 * rng.normal());
  });
}

StreamChunk chunk(const std::string& name, uint64_t seed, float scale = 1.0f) {
  StreamChunk c;
  c.name = name;
  c.train = synthetic(160, seed, scale);
  c.validation = synthetic(40, seed + 100);
  c.test = synthetic(40, seed + 200);
  for (int32_t k = 0; k < 10; ++k) c.classes.push_back(k);
  return c;
}

RetrainOptions small_options() {
  RetrainOptions o;
  o.epochs = 1;
  o.batch_size = 16;
  o.memory = 50;
  o.seed = 3;
  return o;
}

}  // namespace

TEST_CASE("check_finite_parameters finds NaN and Inf, in the open entries only with open_only") {
  Sequential model = build_model("mlp:16-8-10", 1);
  REQUIRE_NOTHROW(check_finite_parameters(model, true, "[test]"));
  Parameter& w = *model.parameters().front();
  const std::string name = w.name;
  const int64_t len = w.row_length();

  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    INFO(bad);
    const float saved = w.value.data()[3 * len + 5];
    w.value.data()[3 * len + 5] = bad;
    w.mask = UpdateMask::all();
    CHECK_THROWS_AS(check_finite_parameters(model, true, "[test] here"), NonFiniteError);
    CHECK_THROWS_WITH(check_finite_parameters(model, true, "[test] here"),
                      Catch::StartsWith("[test] here: parameter " + name + " entry " + std::to_string(3 * len + 5) + " is "));
    // Row 3 frozen: open_only does not look there, a full check does.
    w.mask = UpdateMask::of_rows({0, 1, 2, 4, 5});
    CHECK_NOTHROW(check_finite_parameters(model, true, "[test]"));
    CHECK_THROWS_AS(check_finite_parameters(model, false, "[test]"), NonFiniteError);
    w.mask = UpdateMask::of_rows({2, 3});
    CHECK_THROWS_AS(check_finite_parameters(model, true, "[test]"), NonFiniteError);
    w.value.data()[3 * len + 5] = saved;
    CHECK_NOTHROW(check_finite_parameters(model, false, "[test]"));
  }
  // The largest finite floats are finite.
  w.value.data()[0] = std::numeric_limits<float>::max();
  w.value.data()[1] = -std::numeric_limits<float>::max();
  w.value.data()[2] = std::numeric_limits<float>::denorm_min();
  CHECK_NOTHROW(check_finite_parameters(model, false, "[test]"));
}

TEST_CASE("a round whose weight turns NaN stops at step 1 with a NonFiniteError naming round, step and parameter") {
  // A NaN weight feeding a ReLU can leave the loss finite; the weight check after the step sees it.
  Retrainer r(build_model("mlp:16-32-10", 1), strategy_preset("finetune"), small_options());
  const StreamChunk c0 = chunk("c0", 1), c1 = chunk("c1", 2);
  r.adopt_base(c0);
  Parameter& w = *r.model().parameters().front();
  w.value.data()[7] = std::numeric_limits<float>::quiet_NaN();
  try {
    r.round(c1);
    FAIL("the round did not stop");
  } catch (const NonFiniteError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("[retrain] ") == 0);
    CHECK(what.find("round 1 (c1), step 1") != std::string::npos);
    // The loss stayed finite (the ReLU reads the NaN unit as 0); the weight check after the step saw it.
    CHECK(what.find("round 1 (c1), step 1: parameter " + w.name + " entry 7 is nan: training diverged") !=
          std::string::npos);
  }
}

TEST_CASE("a chunk with a huge feature value stops the round with a NonFiniteError") {
  Retrainer r(build_model("mlp:16-32-10", 1), strategy_preset("replay"), small_options());
  const StreamChunk c0 = chunk("c0", 1), huge = chunk("huge", 2, 1e30f);
  r.adopt_base(c0);
  CHECK_THROWS_AS(r.round(huge), NonFiniteError);
  CHECK_THROWS_WITH([&] {
    Retrainer again(build_model("mlp:16-32-10", 1), strategy_preset("replay"), small_options());
    again.adopt_base(c0);
    again.round(huge);
  }(), Catch::Contains("round 1 (huge), step ") && Catch::Contains("training diverged"));
}
