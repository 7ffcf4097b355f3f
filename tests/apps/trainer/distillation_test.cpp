// Dark experience replay: the logit-matching term, its gradient, and what it does to a round.
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "apps/trainer/distillation.h"
#include "apps/trainer/retraining.h"
#include "apps/trainer/strategy.h"
#include "apps/trainer/stream.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/model_spec.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;

namespace {

Tensor random_tensor(Shape shape, uint64_t seed) {
  Tensor t = Tensor::empty(std::move(shape));
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(rng.uniform() * 4.0 - 2.0);
  return t;
}

}  // namespace

TEST_CASE("logit matching: weight times the mean squared gap of the replayed rows, and its gradient") {
  // 7 rows of 5 classes; rows 4..6 are replayed (3 stored rows).
  const Tensor logits = random_tensor({7, 5}, 1);
  const Tensor stored = random_tensor({3, 5}, 2);
  const float weight = 0.7f;
  Tensor grad = random_tensor({7, 5}, 3);  // the term adds to what is there
  const std::vector<float> before = grad.to_vector();
  const double value = add_logit_matching(logits, 4, stored, weight, grad);

  double expected = 0.0;
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 5; ++c) {
      const double d = static_cast<double>(logits.data()[(4 + r) * 5 + c]) - stored.data()[r * 5 + c];
      expected += d * d;
    }
  CHECK(value == Approx(weight * expected / 15.0).epsilon(1e-12));

  // Rows before the replayed ones keep their gradient; the others gain the term's, which matches
  // central differences of the value (double sums of float inputs: tolerance 1e-3 relative).
  for (int64_t i = 0; i < 4 * 5; ++i) CHECK(grad.data()[i] == before[static_cast<size_t>(i)]);
  const float h = 1e-2f;
  for (int64_t i = 4 * 5; i < 7 * 5; ++i) {
    Tensor up = logits.clone(), down = logits.clone();
    up.data()[i] += h;
    down.data()[i] -= h;
    Tensor scratch = Tensor(Shape{7, 5});
    const double numeric = (add_logit_matching(up, 4, stored, weight, scratch) -
                            add_logit_matching(down, 4, stored, weight, scratch)) / (2.0 * h);
    INFO("entry " << i);
    CHECK(grad.data()[i] - before[static_cast<size_t>(i)] == Approx(numeric).epsilon(1e-3).margin(1e-5));
  }
}

TEST_CASE("logit matching skips the classes a stored row marks NaN (not trained on when stored)") {
  const Tensor logits = random_tensor({3, 4}, 4);
  Tensor stored = random_tensor({2, 4}, 5);
  stored.data()[1] = std::nanf("");  // row 0 (batch row 1), class 1
  stored.data()[7] = std::nanf("");  // row 1 (batch row 2), class 3
  Tensor grad = Tensor(Shape{3, 4});
  const double value = add_logit_matching(logits, 1, stored, 2.0f, grad);
  double expected = 0.0;
  for (int64_t i = 0; i < 8; ++i)
    if (i != 1 && i != 7) expected += std::pow(static_cast<double>(logits.data()[4 + i]) - stored.data()[i], 2);
  CHECK(value == Approx(2.0 * expected / 6.0).epsilon(1e-12));  // the mean over the 6 matched entries
  CHECK(grad.data()[4 + 1] == 0.0f);
  CHECK(grad.data()[4 + 7] == 0.0f);
  CHECK(grad.data()[4 + 0] != 0.0f);
  // Nothing matched: no loss, no gradient.
  Tensor none = Tensor(Shape{1, 4});
  for (int64_t i = 0; i < 4; ++i) none.data()[i] = std::nanf("");
  Tensor untouched = Tensor(Shape{3, 4});
  CHECK(add_logit_matching(logits, 2, none, 1.0f, untouched) == 0.0);
  for (const float g : untouched.to_vector()) CHECK(g == 0.0f);
}

TEST_CASE("logit matching refuses stored logits that do not fit the batch") {
  const Tensor logits = random_tensor({6, 4}, 1);
  Tensor grad = Tensor(Shape{6, 4});
  CHECK_THROWS_WITH(add_logit_matching(logits, 4, random_tensor({3, 4}, 2), 1.0f, grad),
                    Catch::Contains("do not fit logits [6, 4]"));
  CHECK_THROWS_AS(add_logit_matching(logits, 0, random_tensor({2, 5}, 2), 1.0f, grad), InvalidArgument);
  Tensor wrong = Tensor(Shape{6, 5});
  CHECK_THROWS_AS(add_logit_matching(logits, 0, random_tensor({2, 4}, 2), 1.0f, wrong), InvalidArgument);
}

TEST_CASE("with distill a round keeps the memory's logits closer to the ones it stored") {
  StreamOptions o;
  o.scenario = "split";
  o.chunks = 2;
  o.seed = 5;
  const std::vector<StreamChunk> stream =
      make_stream(test::separable_dataset(900, 1), test::separable_dataset(300, 2), o);
  auto drift_of_memory = [&](float distill) {
    RetrainOptions r;
    r.epochs = 3;
    r.batch_size = 16;
    r.memory = 200;
    r.seed = 3;
    Strategy replay = strategy_preset("replay");
    replay.distill = distill;
    Sequential base = build_model("mlp:16-24-24-10", derive_seed(r.seed, "init"));
    train_base(base, stream[0], r);
    Retrainer retrainer(std::move(base), replay, r);
    retrainer.adopt_base(stream[0]);
    // The base memory and the logits the base model gives it: what distill stores.
    const Dataset memory = make_dataset(retrainer.memory().dataset().features.clone(),
                                        retrainer.memory().dataset().labels, 10, "memory");
    const Tensor stored = retrainer.model().forward(memory.features);
    retrainer.round(stream[1], stream);
    const Tensor now = retrainer.model().forward(memory.features);
    // Over the classes of chunk 0 (the ones distill matches; the others are not trained yet).
    std::set<int32_t> classes(memory.labels.begin(), memory.labels.end());
    double gap = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < now.numel(); ++i)
      if (classes.count(static_cast<int32_t>(i % now.dim(1)))) {
        gap += std::pow(now.data()[i] - stored.data()[i], 2);
        ++count;
      }
    return gap / static_cast<double>(count);
  };
  const double plain = drift_of_memory(0.0f), distilled = drift_of_memory(1.0f);
  INFO("mean squared logit change on the base memory: plain " << plain << ", distilled " << distilled);
  CHECK(distilled < 0.5 * plain);
}

TEST_CASE("a distill weight that is negative or not finite, or one without replay, is refused") {
  Strategy s = strategy_preset("bandit-der");
  CHECK(s.distill > 0.0f);
  CHECK_NOTHROW(validate_strategy(s));
  CHECK(s.description().find(" distill=0.1") != std::string::npos);
  s.distill = -0.1f;
  CHECK_THROWS_WITH(validate_strategy(s), Catch::Contains("distill weight must be a finite number >= 0"));
  s.distill = std::nanf("");
  CHECK_THROWS_AS(validate_strategy(s), InvalidArgument);
  s = strategy_preset("ewc");
  s.distill = 0.5f;
  CHECK_THROWS_WITH(validate_strategy(s), Catch::Contains("distill needs replayed samples"));
  CHECK_THROWS_WITH(Retrainer(build_model("mlp:16-8-10", 0), s, RetrainOptions{}), Catch::Contains("distill needs"));
}

TEST_CASE("the logit-matching term split over ranks' shares adds up to the whole batch's term and gradient",
          "[distill]") {
  // A batch of 11 rows, the last 6 replayed; some stored entries NaN (classes not yet trained).
  Rng rng(17);
  const int64_t rows = 11, classes = 5, replayed = 6;
  Tensor logits = Tensor::empty({rows, classes});
  Tensor stored = Tensor::empty({replayed, classes});
  for (int64_t i = 0; i < logits.numel(); ++i) logits.data()[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < stored.numel(); ++i)
    stored.data()[i] = i % classes == 4 ? std::nanf("") : static_cast<float>(rng.normal());
  Tensor whole_grad = Tensor::from_vector({rows, classes}, std::vector<float>(rows * classes, 0.25f));
  const double whole = add_logit_matching(logits, rows - replayed, stored, 0.3f, whole_grad);
  REQUIRE(whole > 0.0);
  for (const std::vector<int64_t>& bounds : {std::vector<int64_t>{0, 4, 8, 11}, std::vector<int64_t>{0, 6, 11},
                                             std::vector<int64_t>{0, 11}, std::vector<int64_t>{0, 2, 5, 7, 11}}) {
    INFO("shares split at " << bounds.size() - 1 << " ranks");
    double sum = 0.0;
    for (size_t r = 0; r + 1 < bounds.size(); ++r) {
      const int64_t begin = bounds[r], size = bounds[r + 1] - begin;
      std::vector<int64_t> mine(static_cast<size_t>(size));
      for (int64_t i = 0; i < size; ++i) mine[static_cast<size_t>(i)] = begin + i;
      const Tensor share = gather_rows(logits, mine);
      Tensor grad = Tensor::from_vector({size, classes}, std::vector<float>(size * classes, 0.25f));
      const double grad_scale = static_cast<double>(rows) / static_cast<double>(size);
      sum += add_logit_matching_share(share, begin, rows, stored, 0.3f, grad_scale, grad);
      // The term's gradient, times the scale, on the share's rows: (g − 0.25) / scale is the whole's.
      for (int64_t i = 0; i < size; ++i)
        for (int64_t c = 0; c < classes; ++c) {
          const float got = (grad.data()[i * classes + c] - 0.25f) / static_cast<float>(grad_scale);
          CHECK(got == Approx(whole_grad.data()[(begin + i) * classes + c] - 0.25f).margin(1e-6));
        }
    }
    CHECK(sum == Approx(whole).epsilon(1e-12));
  }
  Tensor grad = Tensor::empty({3, classes});
  CHECK_THROWS_WITH(add_logit_matching_share(gather_rows(logits, {9, 10, 0}), 9, rows, stored, 0.3f, 1.0, grad),
                    Catch::Contains("outside a batch of 11"));
}
