#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <set>

#include <catch2/catch.hpp>

#include "apps/trainer/retraining.h"
#include "apps/trainer/stream.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/model_spec.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;

namespace {

std::vector<StreamChunk> small_split_stream(int chunks = 3) {
  StreamOptions o;
  o.scenario = "split";
  o.chunks = chunks;
  o.seed = 5;
  return make_stream(test::separable_dataset(900, 1), test::separable_dataset(300, 2), o);
}

StreamRunOptions small_run() {
  StreamRunOptions run;
  run.model_spec = "mlp:16-24-24-10";
  run.scenario = "split";
  run.data = "synthetic";
  run.device = "cpu";
  run.retrain.epochs = 2;
  run.retrain.batch_size = 16;
  run.retrain.memory = 60;
  run.retrain.rows_per_group = 4;
  run.retrain.probe_samples = 20;
  run.retrain.lambda = 0.1f;
  run.retrain.seed = 3;
  return run;
}

// The report without what depends on the machine (seconds, memory).
nlohmann::json without_timing(nlohmann::json j) {
  for (auto& s : j["strategies"]) {
    s.erase("train_seconds");
    for (auto& r : s["rounds"]) {
      r["compute"].erase("train_seconds");
      r["compute"].erase("round_seconds");
      r["compute"].erase("peak_rss_bytes");
    }
  }
  return j;
}

}  // namespace

TEST_CASE("every preset runs a stream end to end and reports every round") {
  const std::vector<StreamChunk> stream = small_split_stream();
  std::vector<Strategy> strategies;
  for (const std::string& name : strategy_presets()) strategies.push_back(strategy_preset(name));
  const StreamReport report = run_stream(stream, strategies, small_run());
  REQUIRE(report.strategies.size() == strategies.size());
  for (const StrategyReport& s : report.strategies) {
    INFO(s.strategy);
    REQUIRE(s.rounds.size() == stream.size());
    const AccuracyMatrix r = s.accuracy();
    for (const auto& row : r) REQUIRE(row.size() == stream.size());
    // The base model learned chunk 0 (a separable problem).
    CHECK(r[0][0] > 0.9);
    for (size_t i = 1; i < s.rounds.size(); ++i) {
      CHECK(s.rounds[i].compute.train_flops() > 0);
      CHECK(s.rounds[i].compute.samples > 0);
      // The newest chunk is learned in its round, whatever the strategy.
      CHECK(r[i][i] > 0.7);
    }
    CHECK(s.train_flops() > 0);
  }
}

TEST_CASE("the paper strategy opens at most its weight budget and saves weight-gradient FLOPs") {
  const std::vector<StreamChunk> stream = small_split_stream();
  const StreamReport report =
      run_stream(stream, {strategy_preset("finetune"), strategy_preset("paper")}, small_run());
  const StrategyReport& finetune = report.strategies[0];
  const StrategyReport& paper = report.strategies[1];
  Sequential model = build_model("mlp:16-24-24-10", 0);
  const int64_t total = model.parameter_count();
  for (size_t i = 1; i < stream.size(); ++i) {
    const RoundCompute& p = paper.rounds[i].compute;
    const RoundCompute& f = finetune.rounds[i].compute;
    CHECK(p.parameters_updated <= static_cast<int64_t>(0.25 * static_cast<double>(total)));
    CHECK(f.parameters_updated == total);
    // As many steps per round (a step's batch is always full when it mixes sources, so up to one
    // batch more per epoch); the closed weights' gradients are never computed.
    const RetrainOptions& o = small_run().retrain;
    CHECK(std::abs(p.samples - f.samples) <= o.epochs * o.batch_size);
    CHECK(p.weight_grad_flops < f.weight_grad_flops / 2);
    CHECK(p.other_flops > 0);  // probes, reward gradients, importance estimation
    CHECK(f.other_flops == 0);
    CHECK(paper.rounds[i].choices["samples"]["pulls"].size() >= 1);
    CHECK(paper.rounds[i].choices["weights"]["groups_opened"].get<int64_t>() >= 1);
  }
}

TEST_CASE("full retraining trains on every chunk seen so far") {
  const std::vector<StreamChunk> stream = small_split_stream();
  const StreamRunOptions run = small_run();
  const StreamReport report = run_stream(stream, {strategy_preset("full")}, run);
  int64_t seen = stream[0].train.size();
  for (size_t i = 1; i < stream.size(); ++i) {
    seen += stream[i].train.size();
    CHECK(report.strategies[0].rounds[i].compute.samples == run.retrain.epochs * seen);
  }
}

TEST_CASE("the same seed gives the same report, another seed another one") {
  const std::vector<StreamChunk> stream = small_split_stream();
  StreamRunOptions run = small_run();
  const std::vector<Strategy> strategies{strategy_preset("replay"), strategy_preset("paper")};
  const nlohmann::json a = without_timing(to_json(run_stream(stream, strategies, run)));
  const nlohmann::json b = without_timing(to_json(run_stream(stream, strategies, run)));
  CHECK(a == b);
  run.retrain.seed = 4;
  const nlohmann::json c = without_timing(to_json(run_stream(stream, strategies, run)));
  CHECK(a != c);
}

TEST_CASE("lambda auto tries the regularizer's grid on validation data and keeps the best") {
  const std::vector<StreamChunk> stream = small_split_stream();
  StreamRunOptions run = small_run();
  run.retrain.lambda = RetrainOptions::kAutoLambda;
  const StreamReport report = run_stream(stream, {strategy_preset("mas")}, run);
  const RoundRecord& first = report.strategies[0].rounds[1];
  const std::vector<float> grid = lambda_grid(default_lambda("mas"));
  REQUIRE(first.choices.contains("lambda_auto"));
  CHECK(first.choices["lambda_auto"]["validation_accuracy"].size() == grid.size());
  const float chosen = first.choices["lambda_auto"]["chosen"].get<float>();
  CHECK(std::find(grid.begin(), grid.end(), chosen) != grid.end());
  CHECK(first.lambda == Approx(chosen));
  // Later rounds keep it and search no more.
  CHECK(report.strategies[0].rounds[2].lambda == Approx(chosen));
  CHECK_FALSE(report.strategies[0].rounds[2].choices.contains("lambda_auto"));
  // The pilots' training is counted: three pilots of a quarter of the round's steps, then the round.
  const int64_t n = stream[1].train.size(), batch = run.retrain.batch_size;
  const int64_t steps = run.retrain.epochs * ((n + batch - 1) / batch);
  const int64_t pilot = first.choices["lambda_auto"]["pilot_steps"].get<int64_t>();
  CHECK(pilot == (steps + 3) / 4);
  CHECK(first.compute.samples == run.retrain.epochs * n + 3 * pilot * batch);
}

TEST_CASE("strategies and options are checked before anything trains") {
  Strategy s = strategy_preset("paper");
  s.samples = "bandit:no-such-policy";
  CHECK_THROWS_WITH(validate_strategy(s), Catch::Contains("no-such-policy"));
  s = strategy_preset("finetune");
  s.weights = "most";
  CHECK_THROWS_WITH(validate_strategy(s), Catch::Contains("unknown weights choice 'most'"));
  s = strategy_preset("finetune");
  s.regularizer = "dropout";
  CHECK_THROWS_AS(validate_strategy(s), InvalidArgument);
  CHECK_THROWS_WITH(strategy_preset("best"), Catch::Contains("presets: finetune"));
  RetrainOptions bad;
  bad.weight_budget = 0.0;
  CHECK_THROWS_WITH(Retrainer(build_model("mlp:16-8-10", 0), strategy_preset("paper"), bad),
                    Catch::Contains("weight budget"));
  const std::vector<StreamChunk> one = small_split_stream(1);
  CHECK_THROWS_WITH(run_stream(one, {strategy_preset("finetune")}, small_run()), Catch::Contains("at least 2 chunks"));
}

TEST_CASE("without --lambda a regularizer trains with its own default strength") {
  const std::vector<StreamChunk> stream = small_split_stream();
  StreamRunOptions run = small_run();
  run.retrain.lambda = RetrainOptions::kDefaultLambda;
  const StreamReport report = run_stream(stream, {strategy_preset("mas"), strategy_preset("finetune")}, run);
  for (size_t i = 1; i < stream.size(); ++i) {
    CHECK(report.strategies[0].rounds[i].lambda == Approx(default_lambda("mas")));
    CHECK(report.strategies[1].rounds[i].lambda == 0.0);
  }
  // A preset's own λ (bandit-der's online EWC at 30) is the default instead, and the middle of auto's grid.
  Strategy der = strategy_preset("bandit-der");
  CHECK(strategy_lambda(der) == 30.0f);
  CHECK(strategy_lambda(strategy_preset("bandit-ewc")) == default_lambda("online-ewc"));
  CHECK(lambda_grid(strategy_lambda(der)) == std::vector<float>{3.0f, 30.0f, 300.0f});
  StreamRunOptions der_run = small_run();
  der_run.retrain.lambda = RetrainOptions::kDefaultLambda;
  const StreamReport der_report = run_stream(stream, {der}, der_run);
  for (size_t i = 1; i < stream.size(); ++i) CHECK(der_report.strategies[0].rounds[i].lambda == 30.0f);
  // Overriding the penalty: the same one keeps the preset's λ, another takes its own default.
  Strategy same = der;
  same.override_regularizer("online-ewc");
  CHECK(strategy_lambda(same) == 30.0f);
  Strategy other = der;
  other.override_regularizer("mas");
  CHECK(other.regularizer == "mas");
  CHECK(strategy_lambda(other) == default_lambda("mas"));
  der.lambda = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(validate_strategy(der), Catch::Contains("lambda must be a finite number"));
  RetrainOptions negative;
  negative.lambda = -3.0f;
  CHECK_THROWS_WITH(Retrainer(build_model("mlp:16-8-10", 0), strategy_preset("mas"), negative),
                    Catch::Contains("lambda must be >= 0"));
}

TEST_CASE("peak memory is measured per round: a reset forgets an earlier, larger peak") {
  {
    // Touch 64 MiB and hand it back with munmap (a sanitizer's allocator would keep freed heap memory).
    const size_t bytes = size_t{64} << 20;
    void* big = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(big != MAP_FAILED);
    std::memset(big, 1, bytes);
    munmap(big, bytes);
  }
  const int64_t before = peak_rss_bytes();
  reset_peak_rss();
  const int64_t after = peak_rss_bytes();
  if (before == 0) SUCCEED("no /proc/self/status here");
  else CHECK(after < before);
}

TEST_CASE("with nothing to replay the bandit and replay strategies train on new data only") {
  const std::vector<StreamChunk> stream = small_split_stream();
  StreamRunOptions run = small_run();
  for (const auto& [memory, fraction] : {std::pair<int64_t, double>{0, 0.5}, std::pair<int64_t, double>{60, 0.0}}) {
    run.retrain.memory = memory;
    run.retrain.replay_fraction = fraction;
    const StreamReport report = run_stream(stream, {strategy_preset("paper"), strategy_preset("replay")}, run);
    for (const StrategyReport& s : report.strategies)
      for (size_t i = 1; i < s.rounds.size(); ++i) {
        INFO(s.strategy << " memory " << memory << " fraction " << fraction);
        CHECK(s.rounds[i].choices["samples"]["replay_per_step"].get<int64_t>() == 0);
        CHECK(s.rounds[i].compute.samples > 0);
      }
  }
}

TEST_CASE("weight aligning scales the new classes' output rows to the old classes' mean norm", "[trainer]") {
  Sequential model = build_model("mlp:3-4-5", 7);
  Parameter* out = model.parameters()[2];  // "2.weight", [5, 4]
  REQUIRE(out->name == "2.weight");
  float* w = out->value.data();
  for (int64_t c = 0; c < 5; ++c)  // row c = (c + 1) * (1, 1, 1, 1): norm 2 (c + 1)
    for (int64_t j = 0; j < 4; ++j) w[c * 4 + j] = static_cast<float>(c + 1);
  const std::vector<float> before(w, w + 20);
  // Old classes 0 and 1 (norms 2 and 4, mean 3), new classes 3 and 4 (norms 8 and 10, mean 9).
  const double gamma = align_new_class_weights(model, {0, 1}, {3, 4});
  CHECK(gamma == Approx(3.0 / 9.0).epsilon(1e-12));
  for (int64_t j = 0; j < 4; ++j) {
    CHECK(w[0 * 4 + j] == before[0 * 4 + j]);  // old classes and a class in neither set stay
    CHECK(w[1 * 4 + j] == before[1 * 4 + j]);
    CHECK(w[2 * 4 + j] == before[2 * 4 + j]);
    CHECK(w[3 * 4 + j] == Approx(4.0 / 3.0).epsilon(1e-6));
    CHECK(w[4 * 4 + j] == Approx(5.0 / 3.0).epsilon(1e-6));
  }
  // Nothing to align: no new class, or no old one.
  CHECK(align_new_class_weights(model, {0, 1}, {}) == 1.0);
  CHECK(align_new_class_weights(model, {}, {3}) == 1.0);
  CHECK_THROWS_WITH(align_new_class_weights(model, {0}, {5}), Catch::Contains("class 5 outside"));
}

TEST_CASE("with align_new_classes a split stream's rounds align exactly the classes each chunk brings", "[trainer]") {
  const auto stream = small_split_stream(3);
  StreamRunOptions run = small_run();
  run.retrain.align_new_classes = true;
  const StreamReport report = run_stream(stream, {strategy_preset("replay")}, run);
  const auto& rounds = report.strategies.at(0).rounds;
  REQUIRE(rounds.size() == 3);
  std::set<int32_t> earlier(stream[0].train.labels.begin(), stream[0].train.labels.end());
  for (size_t r = 1; r < rounds.size(); ++r) {
    INFO("round " << r);
    const auto& aligned = rounds[r].choices.at("weight_aligning");
    std::vector<int32_t> expected;
    for (const int32_t c : std::set<int32_t>(stream[r].train.labels.begin(), stream[r].train.labels.end()))
      if (!earlier.count(c)) expected.push_back(c);
    CHECK(aligned.at("new_classes").get<std::vector<int32_t>>() == expected);
    CHECK(aligned.at("gamma").get<double>() > 0.0);
    earlier.insert(stream[r].train.labels.begin(), stream[r].train.labels.end());
  }
  // Off by default: no aligning recorded.
  const StreamReport plain = run_stream(stream, {strategy_preset("replay")}, small_run());
  CHECK_FALSE(plain.strategies.at(0).rounds.at(1).choices.contains("weight_aligning"));
}

TEST_CASE("prior correction moves only the output biases of the classes seen, by the tau chosen on validation",
          "[trainer]") {
  // A class-incremental stream: chunk 1 brings new classes, chunk 2's are not seen yet after round 1.
  const auto stream = small_split_stream(3);
  const StreamRunOptions run = small_run();
  Sequential base = build_model(run.model_spec, 11);
  train_base(base, stream[0], run.retrain);
  Strategy corrected = strategy_preset("replay");
  corrected.prior_correction = true;
  REQUIRE(corrected.description() == strategy_preset("replay").description() + " prior-correction");
  auto retrainer_with = [&](const Strategy& strategy) {
    Sequential model = build_model(run.model_spec, 11);
    copy_parameters(base, model);
    auto r = std::make_unique<Retrainer>(std::move(model), strategy, run.retrain);
    r->adopt_base(stream[0]);
    return r;
  };
  auto a = retrainer_with(strategy_preset("replay"));
  auto b = retrainer_with(corrected);
  const RoundRecord ra = a->round(stream[1], stream);
  const RoundRecord rb = b->round(stream[1], stream);
  CHECK_FALSE(ra.choices.contains("prior_correction"));
  const nlohmann::json& choice = rb.choices.at("prior_correction");
  const double tau = choice.at("tau").get<double>();
  CHECK((tau == 0.0 || tau == 0.25 || tau == 0.5 || tau == 0.75 || tau == 1.0));
  // The chosen τ is the most accurate on the probe (the first of equals), τ = 0 among the candidates.
  const nlohmann::json& tried = choice.at("validation_accuracy");
  REQUIRE(tried.size() == 5);
  double best = -1.0;
  for (const auto& [key, accuracy] : tried.items()) best = std::max(best, accuracy.get<double>());
  CHECK(tried.at("0.00").get<double>() <= best);
  CHECK(choice.at("probe").get<int64_t>() > 0);
  // Training was the same: every parameter is bit for bit a's but the output bias, whose classes
  // not seen yet (chunk 2's) kept their value; a seen class moved (the round's mix is half new
  // classes, the seen chunks' one each: the log ratio is not 0) unless τ = 0 won.
  std::set<int32_t> seen(stream[0].train.labels.begin(), stream[0].train.labels.end());
  seen.insert(stream[1].train.labels.begin(), stream[1].train.labels.end());
  const std::vector<Parameter*> pa = a->model().parameters(), pb = b->model().parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i + 1 < pa.size(); ++i) {
    INFO(pa[i]->name);
    CHECK(pa[i]->value.to_vector() == pb[i]->value.to_vector());
  }
  const std::vector<float> bias_a = pa.back()->value.to_vector(), bias_b = pb.back()->value.to_vector();
  bool moved = false;
  for (size_t c = 0; c < bias_a.size(); ++c) {
    INFO("class " << c);
    if (!seen.count(static_cast<int32_t>(c))) CHECK(bias_a[c] == bias_b[c]);
    else moved = moved || bias_a[c] != bias_b[c];
  }
  CHECK(moved == (tau != 0.0));
  CHECK(choice.at("new_classes").size() > 0);

  // A stream whose chunks bring no new class (permuted: every class in every chunk): no correction.
  StreamOptions po;
  po.scenario = "permuted";
  po.chunks = 2;
  po.seed = 5;
  const auto permuted = make_stream(test::separable_dataset(600, 1), test::separable_dataset(200, 2), po);
  Sequential pbase = build_model(run.model_spec, 11);
  train_base(pbase, permuted[0], run.retrain);
  Sequential pmodel = build_model(run.model_spec, 11);
  copy_parameters(pbase, pmodel);
  Retrainer pr(std::move(pmodel), corrected, run.retrain);
  pr.adopt_base(permuted[0]);
  const RoundRecord prr = pr.round(permuted[1], permuted);
  CHECK(prr.choices.at("prior_correction").at("new_classes").empty());
  CHECK(prr.choices.at("prior_correction").at("tau") == 0.0);
  CHECK_FALSE(prr.choices.at("prior_correction").contains("probe"));  // no probe was run
}

TEST_CASE("the prior correction's shift is the log ratio of the seen and trained frequencies, 0 for unseen classes") {
  // Seen 2, 2, 0 and trained 6, 2, 0 samples, one count added per class: totals 7 and 11.
  const std::vector<float> shift = prior_correction_shift({2, 2, 0}, {6, 2, 0});
  REQUIRE(shift.size() == 3);
  CHECK(shift[0] == Approx(std::log(3.0 / 7.0) - std::log(7.0 / 11.0)).margin(1e-6));  // over-trained: down
  CHECK(shift[1] == Approx(std::log(3.0 / 7.0) - std::log(3.0 / 11.0)).margin(1e-6));  // under-trained: up
  CHECK(shift[2] == 0.0f);  // never seen
  CHECK(shift[0] < 0.0f);
  CHECK(shift[1] > 0.0f);
  CHECK_THROWS_WITH(prior_correction_shift({1, 2}, {1}), Catch::Contains("2 seen counts but 1 trained counts"));
}

TEST_CASE("accuracy_with_logit_offsets: no offset is evaluate's accuracy, a large one picks its class") {
  const Dataset data = test::separable_dataset(97, 4);
  Sequential model = build_model("mlp:16-12-10", 2);
  const double plain = evaluate(model, data).accuracy;
  std::vector<float> zero(10, 0.0f), towards_3(10, 0.0f);
  towards_3[3] = 1e6f;
  const std::vector<double> acc = accuracy_with_logit_offsets(model, data, {zero, towards_3});
  REQUIRE(acc.size() == 2);
  CHECK(acc[0] == plain);
  CHECK(acc[1] == static_cast<double>(std::count(data.labels.begin(), data.labels.end(), 3)) / data.size());
  CHECK_THROWS_WITH(accuracy_with_logit_offsets(model, data, {std::vector<float>(9, 0.0f)}),
                    Catch::Contains("9 values for a model with 10 outputs"));
}

TEST_CASE("a cosine round schedule changes the rounds, and an unknown schedule is refused", "[trainer]") {
  const std::vector<StreamChunk> stream = small_split_stream();
  StreamRunOptions run = small_run();
  const StreamReport constant = run_stream(stream, {strategy_preset("replay")}, run);
  run.retrain.round_lr_schedule = "cosine";
  const StreamReport cosine = run_stream(stream, {strategy_preset("replay")}, run);
  // Same steps and samples, other weights: the rounds' validation accuracy or R differs.
  const StrategyReport& a = constant.strategies[0];
  const StrategyReport& b = cosine.strategies[0];
  CHECK(a.rounds[1].compute.samples == b.rounds[1].compute.samples);
  CHECK((a.accuracy() != b.accuracy() || a.rounds[2].validation_accuracy != b.rounds[2].validation_accuracy));
  RetrainOptions bad;
  bad.round_lr_schedule = "linear";
  CHECK_THROWS_WITH(Retrainer(build_model("mlp:16-8-10", 0), strategy_preset("replay"), bad),
                    Catch::Contains("round learning-rate schedule must be constant or cosine, got 'linear'"));
}
