#pragma once
// What each fuzz target does with one input, shared by the libFuzzer targets (<name>_fuzz.cpp) and
// the regression tests that replay fuzz/regressions/ and fuzz/corpus/ in the ordinary test suite
// (tests/engine/data/fuzz_regression_test.cpp, tests/engine/io/fuzz_regression_test.cpp).
// Each run_<name> returns "" when the parser accepted the input, or the message of the one error
// type the parser may throw for bad input; anything else (another exception, a crash, a sanitizer
// report, an allocation past the fuzzer's limit) escapes and is a finding.
// Every function is inline: a target links only the libraries of the one it calls.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bandits/factory.h"
#include "engine/core/error.h"
#include "engine/data/csv.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/model_spec.h"
#include "fuzz/fuzz_input.h"
#include "regularizers/importance_state.h"

namespace nnr::fuzz {

// IDX (engine/data/idx.cpp): read_idx and both loaders the CLI calls on it.
inline std::string run_idx(const uint8_t* data, size_t size) {
  const std::string path = input_path(data, size);
  try {
    read_idx(path);
  } catch (const Error& e) {
    return e.what();
  }
  try {
    load_idx_images(path);
  } catch (const Error&) {
  }
  try {
    load_idx_labels(path, 10);
  } catch (const Error&) {
  }
  return "";
}

// CSV (engine/data/csv.cpp): read_csv under the option sets the CLI uses, chosen by the first
// byte (label column none/0/1/2, header auto/present/absent, ',' or ';', 10 classes or the
// default limit); the rest is the file.
inline std::string run_csv(const uint8_t* data, size_t size) {
  if (size == 0) return "";
  const uint8_t choice = data[0];
  CsvOptions options;
  options.label_column = static_cast<int>(choice & 3) - 1;
  options.header = (choice >> 2) % 3 == 0   ? CsvHeader::Auto
                   : (choice >> 2) % 3 == 1 ? CsvHeader::Present
                                            : CsvHeader::Absent;
  options.delimiter = (choice & 0x40) ? ';' : ',';
  options.num_classes = (choice & 0x80) ? 10 : 0;
  try {
    read_csv(input_path(data + 1, size - 1), options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// NPY (engine/data/npy.cpp): read_npy and the feature and label loaders the CLI calls on it.
inline std::string run_npy(const uint8_t* data, size_t size) {
  const std::string path = input_path(data, size);
  try {
    read_npy(path);
  } catch (const Error& e) {
    return e.what();
  }
  try {
    load_npy(path);
  } catch (const Error&) {
  }
  try {
    load_npy_labels(path, 0);
  } catch (const Error&) {
  }
  return "";
}

// Safetensors checkpoints (engine/io/checkpoint_load.cpp), as nnr eval/predict and every model
// directory read them.
inline std::string run_checkpoint(const uint8_t* data, size_t size) {
  try {
    load_checkpoint(input_path(data, size));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Model specs (engine/nn/model_spec.cpp): malformed or too large specs are refused with
// nnr::InvalidArgument before anything is allocated. The limit is lowered to 2^20 parameters here
// (the same check as kMaxModelParameters) so that a spec near it builds in milliseconds, not the
// seconds a 2^27-parameter model takes under the sanitizers.
constexpr int64_t kFuzzMaxModelParameters = int64_t(1) << 20;
inline std::string run_model_spec(const uint8_t* data, size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  try {
    model_input_shape(spec);
    build_model(spec, 1, kFuzzMaxModelParameters);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

// Bandit policy state (bandits/policy.cpp, factory.cpp, each policy's load_extra): JSON as a
// served model's state carries it, handed to restore_policy. A state it accepts must then work:
// a choice, a reward, and a save that restores again.
inline std::string run_bandit_state(const uint8_t* data, size_t size) {
  const nlohmann::json state = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded()) return "not JSON";
  try {
    auto policy = bandits::restore_policy(state);
    if (!policy->arms().empty()) {
      if (policy->multiple_play()) {
        const auto arms = policy->select_k(1);
        policy->update_round({{arms[0], 0.5}});
      } else {
        policy->update(policy->select(), 0.5);
      }
    }
    bandits::restore_policy(policy->save_state());
  } catch (const bandits::BanditError& e) {
    return e.what();
  }
  return "";
}

// Regularizer state (regularizers/importance_state.cpp): Ω and θ* of a served model, read by
// load_checkpoint and restored into a small model (mlp:3-4-2: 0.weight [4, 3], 0.bias [4],
// 2.weight [2, 4], 2.bias [2]) as nnr retrain does.
inline std::string run_importance_state(const uint8_t* data, size_t size) {
  static Sequential model = build_model("mlp:3-4-2", 1);
  try {
    restore_importance(model, load_checkpoint(input_path(data, size)));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace nnr::fuzz
