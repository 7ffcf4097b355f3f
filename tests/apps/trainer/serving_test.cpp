// A served model directory round by round: nnr retrain's library side.
#include <filesystem>
#include <fstream>
#include <map>

#include <catch2/catch.hpp>

#include "apps/trainer/model_dir.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/serving.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/nn/model_spec.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;
using nnr::test::small_serving_setup;
using nnr::test::snapshot;
using nnr::test::TempDir;
using nnr::test::write_chunk;

namespace {

struct Chunks {
  TempDir dir;
  std::string c0 = dir.file("c0.csv"), c1 = dir.file("c1.csv"), c2 = dir.file("c2.csv");
  Chunks() {
    write_chunk(c0, {0, 1, 2, 3}, 400, 1);
    write_chunk(c1, {4, 5, 6}, 300, 2);
    write_chunk(c2, {7, 8, 9}, 300, 3);
  }
};

// Two rounds on a served directory against the same rounds of a files stream, bit for bit.
void check_served_rounds_equal_stream(const ServingSetup& setup) {
  Chunks data;
  const std::string dir = data.dir.file("served");
  start_model_dir(dir, data.c0, setup);
  const ServingRound r1 = retrain_model_dir(dir, data.c1, 100.0);
  const ServingRound r2 = retrain_model_dir(dir, data.c2, 100.0);
  REQUIRE(r2.version == 3);

  // The stream, step by step as run_stream takes it, so its final weights can be compared.
  StreamOptions o = setup.chunks;
  o.chunk_specs = {data.c0, data.c1, data.c2};
  const std::vector<StreamChunk> stream = make_file_stream(o);
  Sequential base = build_model(setup.model_spec, derive_seed(setup.retrain.seed, "init"));
  train_base(base, stream[0], setup.retrain);
  Retrainer retrainer(std::move(base), setup.strategy, setup.retrain);
  retrainer.adopt_base(stream[0]);
  const RoundRecord s1 = retrainer.round(stream[1], stream);
  const RoundRecord s2 = retrainer.round(stream[2], stream);

  for (const auto& [served, streamed] : {std::pair{&r1.record, &s1}, std::pair{&r2.record, &s2}}) {
    CHECK(served->validation_accuracy == streamed->validation_accuracy);
    CHECK(served->lambda == streamed->lambda);
    CHECK(served->compute.samples == streamed->compute.samples);
    CHECK(served->compute.train_flops() == streamed->compute.train_flops());
    CHECK(served->compute.parameters_updated == streamed->compute.parameters_updated);
    CHECK(served->choices == streamed->choices);
  }
  const LoadedModel v3 = load_model(dir + "/3/" + kModelFile);
  Sequential& mine = retrainer.model();
  const std::vector<Parameter*> a = const_cast<Sequential&>(v3.model).parameters(), b = mine.parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i]->name);
    REQUIRE(a[i]->value.to_vector() == b[i]->value.to_vector());  // bit for bit
  }
}

}  // namespace

TEST_CASE("two served rounds equal a two-round files stream with the same seed") {
  check_served_rounds_equal_stream(small_serving_setup());
}

TEST_CASE("with dark experience replay the memory's stored logits survive the directory between rounds") {
  ServingSetup setup = small_serving_setup();
  setup.strategy.distill = 0.1f;
  check_served_rounds_equal_stream(setup);
}

TEST_CASE("with prior correction the strategy survives the directory and served rounds equal the stream") {
  ServingSetup setup = small_serving_setup();
  setup.strategy.prior_correction = true;
  check_served_rounds_equal_stream(setup);
}

TEST_CASE("a preset's lambda survives the directory and served rounds equal the stream") {
  ServingSetup setup = small_serving_setup();
  setup.strategy.lambda = 7.0f;  // unlike the regularizer's default, so a lost value shows
  setup.retrain.lambda = RetrainOptions::kDefaultLambda;
  check_served_rounds_equal_stream(setup);
}

TEST_CASE("the gate refuses a round trained on shuffled labels and leaves the directory byte for byte") {
  Chunks data;
  const std::string dir = data.dir.file("served");
  const std::string noise = data.dir.file("noise.csv");
  write_chunk(noise, {4, 5, 6}, 300, 9, true);
  start_model_dir(dir, data.c0, small_serving_setup());
  retrain_model_dir(dir, data.c1, 1.0);
  const auto before = snapshot(dir);
  const ServingRound refused = retrain_model_dir(dir, noise, 1.0);
  CHECK(refused.refused);
  CHECK(refused.version == 0);
  CHECK(refused.base_version == 2);
  CHECK(refused.new_validation_accuracy < refused.old_validation_accuracy - 0.01);
  CHECK_THAT(refused.reason, Catch::Contains("below version 2"));
  CHECK(snapshot(dir) == before);
  CHECK(list_versions(dir) == std::vector<int64_t>{1, 2});
  // The same chunk with the gate wide open is written.
  CHECK(retrain_model_dir(dir, noise, 100.0).version == 3);
}

TEST_CASE("a model trained elsewhere is adopted as version 1, retrained, and loads back") {
  Chunks data;
  const std::string outside = data.dir.file("outside.safetensors");
  {
    Sequential model = build_model("mlp:16-64-64-10", 42);
    StreamOptions o;
    const StreamChunk chunk = make_file_chunk(data.c0, 0, o);
    RetrainOptions train;
    train.batch_size = 16;
    train_base(model, chunk, train);
    save_model(outside, model);
  }
  const std::string dir = data.dir.file("adopted");
  ServingSetup setup = small_serving_setup();
  setup.model_spec = "";  // taken from the file
  const ServingRound first = adopt_model_dir(dir, outside, data.c0, setup);
  CHECK(first.version == 1);
  CHECK(first.new_validation_accuracy > 0.9);
  const ServingRound next = retrain_model_dir(dir, data.c1, 5.0);
  CHECK(next.version == 2);
  const LoadedModel back = load_model(dir + "/2/" + kModelFile);
  CHECK(back.model.spec() == "mlp:16-64-64-10");
}

TEST_CASE("a state from another model or a truncated one is refused, naming the file") {
  Chunks data;
  const std::string dir = data.dir.file("served");
  start_model_dir(dir, data.c0, small_serving_setup());
  ServingSetup other = small_serving_setup();
  other.model_spec = "mlp:16-48-48-10";
  const std::string other_dir = data.dir.file("other");
  start_model_dir(other_dir, data.c0, other);

  const std::string state = dir + "/1/" + kStateFile;
  std::filesystem::copy_file(other_dir + "/1/" + kStateFile, state, std::filesystem::copy_options::overwrite_existing);
  CHECK_THROWS_WITH(retrain_model_dir(dir, data.c1, 1.0), Catch::Contains(state));

  const std::vector<uint8_t> whole = nnr::test::read_bytes(other_dir + "/1/" + kStateFile);
  std::ofstream(state, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(whole.data()), static_cast<std::streamsize>(whole.size() / 2));
  CHECK_THROWS_WITH(retrain_model_dir(dir, data.c1, 1.0), Catch::Contains(state));
  CHECK(list_versions(dir) == std::vector<int64_t>{1});
}

TEST_CASE("starting a directory that has a version, or retraining an empty one, is refused") {
  Chunks data;
  const std::string dir = data.dir.file("served");
  CHECK_THROWS_WITH(retrain_model_dir(dir, data.c1, 1.0), Catch::Contains("holds no model version"));
  start_model_dir(dir, data.c0, small_serving_setup());
  CHECK_THROWS_WITH(start_model_dir(dir, data.c0, small_serving_setup()), Catch::Contains("already holds version 1"));
  CHECK_THROWS_WITH(retrain_model_dir(dir, data.c1, -1.0), Catch::Contains("--max-regression"));
  ServingSetup full = small_serving_setup();
  full.strategy = strategy_preset("full");
  const std::string full_dir = data.dir.file("full");
  start_model_dir(full_dir, data.c0, full);
  CHECK_THROWS_WITH(retrain_model_dir(full_dir, data.c1, 1.0), Catch::Contains("no longer at hand"));
  CHECK(list_versions(full_dir) == std::vector<int64_t>{1});
}

TEST_CASE("starting a directory from data that cannot be read leaves no directory behind") {
  Chunks data;
  const std::string dir = data.dir.file("never");
  CHECK_THROWS_WITH(start_model_dir(dir, data.dir.file("missing.csv"), small_serving_setup()), Catch::Contains("missing.csv"));
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK_THROWS_WITH(adopt_model_dir(dir, data.dir.file("missing.safetensors"), data.c0, small_serving_setup()),
                    Catch::Contains("missing.safetensors"));
  CHECK_FALSE(std::filesystem::exists(dir));
}
