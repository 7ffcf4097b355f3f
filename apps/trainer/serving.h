#pragma once
// A served model on disk, retrained one round at a time: a versioned model directory
// (model_dir.h) whose every version holds
//   model.safetensors   the plain PyTorch-named weights (loads in PyTorch with strict=True)
//   state.safetensors   what the next round needs: Ω and θ* (nnr.omega.*, nnr.anchor.*), the replay
//                       memory and the seen chunks' validation parts as tensors, and in its metadata
//                       ("nnr.state", JSON) the strategy, the round options, the bandits', memory's
//                       and regularizer's state, the generators' states and the round counter.
// A round restores the newest version into a Retrainer, trains it on the new chunk, and writes
// version n+1 only if the regression gate passes: on the validation parts of the old chunks and
// the new one, the candidate may be worse than version n by at most max_regression points.
// Two rounds through a directory give the weights and report of a two-round `files` stream with
// the same seed and options.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/trainer/retraining.h"
#include "apps/trainer/stream.h"

namespace nnr {

inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kStateFile = "state.safetensors";

struct ServingSetup {
  std::string model_spec;
  Strategy strategy = strategy_preset("paper");
  RetrainOptions retrain;      // every round uses these (stored in the state; cuda is not)
  StreamOptions chunks;        // how an arriving data spec becomes a chunk: validation_fraction,
                               // holdout (test part of a file without @TEST), seed
};

struct ServingRound {
  int64_t version = 0;            // the version written; 0 when the gate refused the round
  int64_t base_version = 0;       // the version the round started from (0: none)
  bool refused = false;
  std::string reason;             // why the gate refused
  double old_validation_accuracy = 0.0;  // version n on the validation parts of old + new chunks
  double new_validation_accuracy = 0.0;  // the candidate on the same data
  RoundRecord record;             // the round (test_accuracy: the chunk's own test part)
  // --on-nonfinite retry: the first attempt diverged (retry_reason), and the round that is reported
  // was run again from version n on disk with learning rate retry_lr (half the stored one; the
  // directory's stored options are not changed).
  bool retried = false;
  float retry_lr = 0.0f;
  std::string retry_reason;
};

// What a round does when training diverges (NonFiniteError: a non-finite loss or weight).
enum class NonFinitePolicy {
  Fail,   // the error propagates; nothing is written
  Retry,  // restore version n from disk and run the round once more at half the learning rate;
          // if that diverges too, its error propagates and nothing is written
};
NonFinitePolicy parse_nonfinite_policy(const std::string& name);  // "fail" | "retry"

// Version 1 from scratch: builds `setup.model_spec`, trains it on `data_spec` (chunk 0) as a
// stream's base model is trained, estimates importance, fills the memory, writes DIR/1.
// Throws nnr::Error if DIR already has a version.
// Data parallel (a collective of several ranks, every rank calling with the same arguments): the
// base training, importance estimate and evaluations are split across the ranks as a stream's are
// (RetrainOptions::collective); rank 0 alone writes DIR/1 (atomically, as one process does) and the
// other ranks return once it is written; every rank returns the same ServingRound.
ServingRound start_model_dir(const std::string& dir, const std::string& data_spec, const ServingSetup& setup,
                             Context* cuda = nullptr, Collective* collective = nullptr);

// Version 1 from a model trained elsewhere (e.g. PyTorch): loads `init_file` (with `model_spec` when
// the file has no nnr metadata), estimates importance and fills the memory from `memory_data_spec`.
ServingRound adopt_model_dir(const std::string& dir, const std::string& init_file, const std::string& memory_data_spec,
                             ServingSetup setup);

// One round on DIR's newest version with the chunk `data_spec`; writes version n+1 unless the gate
// refuses (then DIR is left exactly as it was). Any exception (a diverged round included) leaves
// DIR as it was too: the version is written only after the round and the gate, into a temporary
// folder that is removed unless it is committed whole (model_dir.h).
// `strategy`, when given, must be the one the directory was started with (its rounds keep it).
// Data parallel (a collective of several ranks, every rank calling with the same arguments): rank 0
// takes the directory's lock and chooses the base version, every rank restores it and runs the
// round split across the ranks (RetrainOptions::collective), rank 0 alone writes the new version;
// every rank returns the same ServingRound.
ServingRound retrain_model_dir(const std::string& dir, const std::string& data_spec, double max_regression,
                               Context* cuda = nullptr, NonFinitePolicy on_nonfinite = NonFinitePolicy::Fail,
                               const std::string& strategy = "", Collective* collective = nullptr);

nlohmann::json to_json(const ServingRound& round);

}  // namespace nnr
