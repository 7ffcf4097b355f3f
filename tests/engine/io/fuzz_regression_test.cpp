// The fuzzers' inputs for checkpoints, model specs, bandit state and regularizer (importance)
// state (fuzz/regressions/ and fuzz/corpus/) replayed through the same calls as the fuzz targets
// (fuzz/targets.h): every regression input must end in the parser's clean error (or load), every
// seed must load. Each finding the fuzzers made is also pinned by name below. Under the ASan +
// UBSan build this also proves them free of memory errors and undefined behaviour.
#include <catch2/catch.hpp>

#include "fuzz/replay.h"
#include "fuzz/targets.h"

using nnr::fuzz::replay;

TEST_CASE("fuzz inputs: checkpoint regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "checkpoint").empty());
  const auto errors = replay("checkpoint", nnr::fuzz::run_checkpoint, true);
  // A number beyond double in the header threw nlohmann's out_of_range past load_checkpoint.
  CHECK_THAT(errors.at("uncaught-json-number-overflow.safetensors"), Catch::Contains("header is not valid JSON"));
}

TEST_CASE("fuzz inputs: importance state regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "importance_state").empty());
  const auto errors = replay("importance_state", nnr::fuzz::run_importance_state, true);
  CHECK_THAT(errors.at("uncaught-json-out-of-range.safetensors"), Catch::Contains("header is not valid JSON"));
}

TEST_CASE("fuzz inputs: model spec regressions are refused before allocation and seeds build", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "model_spec").empty());
  const auto errors = replay("model_spec", nnr::fuzz::run_model_spec, false);
  // mlp:58725-6210 (365 million parameters) once allocated 2.9 GB before anything refused it.
  CHECK_THAT(errors.at("oom-mlp-365m-parameters"), Catch::Contains("too large"));
  // cnn:1x28x282568-10 (79 million parameters, under kMaxModelParameters) took over 10 s to build
  // under the sanitizers: the fuzz target's own lower limit refuses it.
  CHECK_THAT(errors.at("timeout-cnn-79m-parameters"), Catch::Contains("too large"));
}

TEST_CASE("fuzz inputs: bandit state regressions fail cleanly and seeds restore", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "bandit_state").empty());
  const auto errors = replay("bandit_state", nnr::fuzz::run_bandit_state, false);
  // A generator word of 1.29e32 (a float) went through nlohmann's get<uint64_t>: undefined behaviour.
  CHECK_THAT(errors.at("ubsan-float-rng-word.json"), Catch::Contains("rng is not an integer"));
}

TEST_CASE("model specs over kMaxModelParameters are refused, naming the spec", "[fuzz]") {
  CHECK_THROWS_WITH(nnr::build_model("mlp:100000-100000-10", 1),
                    Catch::Contains("'mlp:100000-100000-10'") && Catch::Contains("too large"));
  CHECK_THROWS_WITH(nnr::build_model("cnn:1x2147483648x2147483648-10", 1), Catch::Contains("[model spec]"));
  CHECK_THROWS_WITH(nnr::build_model("cnn:3x8x8-c2147483648k2147483648-10", 1), Catch::Contains("too large"));
  CHECK_NOTHROW(nnr::build_model("mlp:784-256-10", 1));
}
