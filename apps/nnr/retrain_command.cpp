// nnr retrain: one serving round on a versioned model directory, with a regression gate; or, with
// --init, adopt a model trained elsewhere as the directory's version 1.
#include <cstdio>
#include <memory>

#include "apps/nnr/commands.h"
#include "apps/nnr/data_parallel.h"
#include "apps/nnr/device.h"
#include "apps/trainer/serving.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"

namespace nnr::cli {
namespace {

struct RetrainFlags {
  std::string model_dir, data, init, model_spec, memory_data, strategy = "paper", device = "cpu",
      on_nonfinite = "fail";
  double max_regression = 1.0;
  uint64_t seed = 1;
  int threads = 0;
  bool json = false;
};

void print_round(const ServingRound& r, const std::string& dir) {
  if (r.base_version == 0) {
    std::printf("%s: version %lld written (validation accuracy %.2f %%)\n", dir.c_str(),
                static_cast<long long>(r.version), 100.0 * r.new_validation_accuracy);
    return;
  }
  std::printf("round %d on %s: validation accuracy %.2f %% -> %.2f %% (old and new chunks), test %.2f %% on the "
              "chunk's test part, %.2f GFLOP, %.1f s\n",
              r.record.round, r.record.chunk.c_str(), 100.0 * r.old_validation_accuracy,
              100.0 * r.new_validation_accuracy,
              r.record.test_accuracy.empty() ? 0.0 : 100.0 * r.record.test_accuracy.front(),
              static_cast<double>(r.record.compute.train_flops()) * 1e-9, r.record.compute.round_seconds);
  if (r.retried)
    std::printf("retried at lr %g after the first attempt diverged: %s\n", static_cast<double>(r.retry_lr),
                r.retry_reason.c_str());
  if (r.refused)
    std::printf("refused: %s; %s keeps version %lld\n", r.reason.c_str(), dir.c_str(),
                static_cast<long long>(r.base_version));
  else
    std::printf("%s: version %lld written\n", dir.c_str(), static_cast<long long>(r.version));
}

int run_retrain(const RetrainFlags& f, bool strategy_given) {
  set_num_threads(f.threads);
  // mpirun -np N: the round is split across the ranks; rank 0 alone writes and prints. The batch
  // size is the directory's (every share may be empty but one: the step is still exact).
  Collective* const parallel = data_parallel_collective("retrain", f.device, 0, f.threads);
  const bool root = !parallel || parallel->rank() == 0;
  if (parallel && !f.init.empty())
    throw InvalidArgument("[retrain] --init is not data-parallel: adopt the model without mpirun, then run the rounds "
                          "under it");
  const std::unique_ptr<Context> cuda = open_device(f.device, "retrain", parallel);
  ServingRound result;
  if (!f.init.empty()) {
    if (f.memory_data.empty()) throw InvalidArgument("[retrain] --init needs --memory-data (the data the model knows)");
    if (!f.data.empty()) throw InvalidArgument("[retrain] --init starts a directory; retrain it with --data afterwards");
    ServingSetup setup;
    setup.model_spec = f.model_spec;
    setup.strategy = strategy_preset(f.strategy);
    setup.retrain.seed = f.seed;
    setup.chunks.scenario = "files";
    setup.chunks.seed = derive_seed(f.seed, "stream");
    result = adopt_model_dir(f.model_dir, f.init, f.memory_data, setup);
  } else {
    if (f.data.empty()) throw InvalidArgument("[retrain] --data is required (the new chunk), or --init to start");
    if (!f.memory_data.empty() || !f.model_spec.empty())
      throw InvalidArgument("[retrain] --model-spec and --memory-data apply only with --init: a directory keeps "
                            "the model and options it was started with");
    result = retrain_model_dir(f.model_dir, f.data, f.max_regression, cuda.get(),
                               parse_nonfinite_policy(f.on_nonfinite), strategy_given ? f.strategy : "", parallel);
  }
  if (parallel) {
    parallel->barrier();
    parallel->finish();
  }
  if (!root) return result.refused ? 3 : 0;
  if (f.json) {
    nlohmann::json j = to_json(result);
    if (parallel) j["data_parallel"] = {{"ranks", parallel->size()}, {"bytes_all_reduced", parallel->bytes_all_reduced()}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_round(result, f.model_dir);
  }
  return result.refused ? 3 : 0;
}

}  // namespace

Command add_retrain(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<RetrainFlags>();
  CLI::App* cmd = app.add_subcommand(
      "retrain", "One retraining round on a versioned model directory (DIR/<n>/), or adopt a model as version 1");
  cmd->footer(
      "\nDIR/<n>/model.safetensors holds plain PyTorch-named weights, DIR/<n>/state.safetensors what the next\n"
      "round needs. A round restores the newest version, trains on --data and writes version n+1, unless the\n"
      "candidate's validation accuracy on the old and new chunks is more than --max-regression points below\n"
      "version n: then nothing is written and the exit status is 3. Start a directory with\n"
      "  nnr train --data FIRST --model-dir DIR        or\n"
      "  nnr retrain --model-dir DIR --init MODEL.safetensors [--model-spec S] --memory-data FIRST\n"
      "Data specs: FILE.csv, FEATURES:LABELS, fashion-mnist[:train|:test]; TRAIN@TEST gives the chunk's test part\n"
      "(else the last 20 % of TRAIN is). Under mpirun -np N the round is split across the ranks (with\n"
      "--device cuda one GPU per rank, gradients summed by NCCL) and rank 0 alone writes the version.\n"
      "If training diverges (a non-finite loss or weight) the round stops with exit status 1 and writes\n"
      "nothing; with --on-nonfinite retry it runs once more from version n at half the learning rate (the\n"
      "directory's stored options are unchanged; --json reports \"retried\" and the lr).\n"
      "Exit status: 0 written, 1 runtime error, 2 usage error, 3 refused by the gate.");
  cmd->add_option("--model-dir", f->model_dir, "The versioned model directory")->required();
  cmd->add_option("--data", f->data, "The new chunk's data spec (TRAIN or TRAIN@TEST)");
  cmd->add_option("--max-regression", f->max_regression,
                  "Refuse the round if validation accuracy drops more than this many points")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--on-nonfinite", f->on_nonfinite,
                  "When training diverges: fail (exit 1, nothing written) or retry once at half the learning rate")
      ->check(CLI::IsMember({"fail", "retry"}))
      ->capture_default_str();
  cmd->add_option("--init", f->init, "Adopt this model (safetensors, e.g. from PyTorch) as version 1")
      ->check(CLI::ExistingFile);
  cmd->add_option("--model-spec", f->model_spec, "With --init: the architecture, for files without nnr metadata");
  cmd->add_option("--memory-data", f->memory_data, "With --init: data the model was trained on (fills the memory)");
  CLI::Option* strategy = cmd->add_option("--strategy", f->strategy, "With --init: the strategy every round uses; on a round: checked against the directory's")
                              ->capture_default_str();
  cmd->add_option("--seed", f->seed, "With --init: the seed every round derives from")->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024))->capture_default_str();
  add_device_option(cmd, f->device, "Train");
  cmd->add_flag("--json", f->json, "Print the round as JSON on stdout");
  return [f, strategy, &exit_code] { exit_code = run_retrain(*f, strategy->count() > 0); };
}

}  // namespace nnr::cli
