// nnr stream: retrain a model round after round on a stream of chunks and compare strategies.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "apps/nnr/commands.h"
#include "apps/nnr/data_parallel.h"
#include "apps/nnr/device.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/retraining.h"
#include "apps/trainer/stream.h"
#include "apps/trainer/stream_report.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"
#include "engine/nn/model_spec.h"

namespace nnr::cli {
namespace {

struct StreamFlags {
  std::string data = "fashion-mnist", test_data, model = "mlp:784-400-400-10", report, save_models, device = "cpu";
  StreamOptions stream;
  std::string strategy = "paper", compare, samples, weights, regularizer;
  float distill = -1.0f;  // < 0: the preset's
  std::string prior_correction;  // on | off; empty: the preset's
  RetrainOptions retrain;
  std::string lambda = "default", memory_groups = "chunk", optimizer = "sgd";
  float lr = 0.03f;  // chosen on validation accuracy of split Fashion-MNIST (0.01, 0.03, 0.1)
  int threads = 0;
  bool json = false, quiet = false;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<Strategy> chosen_strategies(const StreamFlags& f) {
  std::vector<Strategy> out;
  if (!f.compare.empty()) {
    for (const std::string& name : split_list(f.compare)) out.push_back(strategy_preset(name));
    if (out.empty()) throw InvalidArgument("[stream] --compare needs preset names, e.g. finetune,full,replay,paper");
  } else {
    out.push_back(strategy_preset(f.strategy));
  }
  // --samples/--weights/--regularizer override the preset's choices (then it is a custom strategy).
  for (Strategy& s : out) {
    if (!f.samples.empty()) s.samples = f.samples;
    if (!f.weights.empty()) s.weights = f.weights;
    if (!f.regularizer.empty()) s.override_regularizer(f.regularizer);
    if (f.distill >= 0.0f) s.distill = f.distill;
    if (!f.prior_correction.empty()) s.prior_correction = f.prior_correction == "on";
    if (!f.samples.empty() || !f.weights.empty() || !f.regularizer.empty() || f.distill >= 0.0f ||
        !f.prior_correction.empty())
      s.name += "+custom";
    validate_strategy(s);
  }
  return out;
}

// An output folder (--report, --save-models) must be writable before the rounds run, not after.
// Nothing is created here (a run that fails leaves no empty folder); the writers create it at the end.
void check_output_dir(const std::string& flag, const std::string& dir) {
  if (dir.empty()) return;
  std::string existing = dir;
  struct stat st;
  while (stat(existing.c_str(), &st) != 0) {
    const size_t slash = existing.find_last_of('/');
    existing = slash == std::string::npos ? "." : (slash == 0 ? "/" : existing.substr(0, slash));
  }
  if (!S_ISDIR(st.st_mode) || access(existing.c_str(), W_OK) != 0)
    throw InvalidArgument("[stream] cannot write " + flag + " " + dir + ": '" + existing + "' is not a writable directory");
}

void run_stream_command(StreamFlags f) {
  set_num_threads(f.threads);
  const std::vector<Strategy> strategies = chosen_strategies(f);
  if (f.lambda == "auto") {
    f.retrain.lambda = RetrainOptions::kAutoLambda;
  } else if (f.lambda == "default") {
    f.retrain.lambda = RetrainOptions::kDefaultLambda;
  } else {
    try {
      size_t used = 0;
      f.retrain.lambda = std::stof(f.lambda, &used);
      if (used != f.lambda.size() || !(f.retrain.lambda >= 0.0f)) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw InvalidArgument("[stream] --lambda must be a number >= 0, 'default' or 'auto', got '" + f.lambda + "'");
    }
  }
  f.retrain.memory_grouping = parse_memory_grouping(f.memory_groups);
  f.retrain.optimizer = OptimizerOptions{f.optimizer, f.lr, f.retrain.optimizer.momentum, 0.0f};
  f.stream.seed = derive_seed(f.retrain.seed, "stream");
  // mpirun -np N: every rank runs the same stream and seed; each step's batch and every evaluation
  // are split across the ranks (RetrainOptions::collective). Rank 0 alone prints and writes.
  Collective* const parallel = data_parallel_collective("stream", f.device, f.retrain.batch_size, f.threads);
  const bool root = !parallel || parallel->rank() == 0;
  f.retrain.collective = parallel;
  if (root) {
    check_output_dir("--report", f.report);
    check_output_dir("--save-models", f.save_models);
  }
  const std::unique_ptr<Context> cuda = open_device(f.device, "stream", parallel);
  f.retrain.cuda = cuda.get();

  std::vector<StreamChunk> chunks;
  if (f.stream.scenario == "files") {
    if (f.stream.chunk_specs.size() < 2) throw InvalidArgument("[stream] --scenario files needs at least two --chunk");
    f.stream.chunks = static_cast<int>(f.stream.chunk_specs.size());
    chunks = make_file_stream(f.stream);
  } else {
    if (f.test_data.empty()) {
      if (f.data == "fashion-mnist" || f.data == "fashion-mnist:train") f.test_data = "fashion-mnist:test";
      else throw InvalidArgument("[stream] --test-data is required with --data " + f.data);
    }
    const Dataset train = load_dataset(f.data), test = load_dataset(f.test_data);
    chunks = make_stream(train, test, f.stream);
  }
  check_model_accepts(build_model(f.model, 0), chunks.front().train.sample_shape(), chunks.front().train.num_classes,
                      f.data);
  StreamRunOptions run{f.model, f.retrain, f.stream.scenario, f.stream.scenario == "files" ? "files" : f.data, f.device};
  const std::string ranks_note =
      parallel ? ", data parallel on " + std::to_string(parallel->size()) + " ranks (threads are per rank)" : "";
  if (root)
    std::fprintf(stderr, "nnr stream: %s, %s, %zu chunks, %s, seed %llu, %d threads%s%s\n", run.data.c_str(),
                 f.stream.scenario.c_str(), chunks.size(), f.model.c_str(),
                 static_cast<unsigned long long>(f.retrain.seed), num_threads(), cuda ? ", cuda" : "",
                 ranks_note.c_str());

  const auto on_round = [&](const std::string& strategy, const RoundRecord& r) {
    if (f.quiet || !root) return;
    double acc = 0.0;
    for (size_t j = 0; j <= static_cast<size_t>(r.round) && j < r.test_accuracy.size(); ++j) acc += r.test_accuracy[j];
    acc /= static_cast<double>(r.round + 1);
    std::fprintf(stderr, "%s round %d/%zu (%s): ACC %.2f %%, val %.2f %%, %.2f GFLOP, %.1f s\n", strategy.c_str(),
                 r.round, chunks.size() - 1, r.chunk.c_str(), 100.0 * acc, 100.0 * r.validation_accuracy,
                 static_cast<double>(r.compute.train_flops()) * 1e-9, r.compute.round_seconds);
  };
  int64_t models_saved = 0;
  const auto on_model = [&](const std::string& strategy, Sequential& model) {
    if (parallel && !parameters_identical(model, *parallel))
      throw Error("[stream] the ranks' weights differ after strategy " + strategy + " (rank " +
                  std::to_string(parallel->rank()) + "): the data-parallel run is not consistent");
    if (f.save_models.empty() || !root) return;
    std::error_code ec;
    std::filesystem::create_directories(f.save_models, ec);
    if (ec) throw Error("[stream] cannot create --save-models " + f.save_models + ": " + ec.message());
    save_model(f.save_models + "/" + strategy + ".safetensors", model, {},
               {{"nnr.seed", std::to_string(f.retrain.seed)}, {"nnr.stream", f.stream.scenario}});
    ++models_saved;
  };
  StreamReport report = run_stream(chunks, strategies, run, on_round, on_model);
  if (parallel) {
    // Every rank has the report; the run ends on every rank together, then rank 0 writes.
    report.data_parallel = {{"ranks", parallel->size()}, {"bytes_all_reduced", parallel->bytes_all_reduced()}};
    parallel->barrier();
    parallel->finish();
    if (!root) return;
  }
  report.settings = {{"epochs", f.retrain.epochs},
                     {"batch_size", f.retrain.batch_size},
                     {"optimizer", f.optimizer},
                     {"lr", f.lr},
                     {"lr_schedule", f.retrain.round_lr_schedule},
                     {"memory", f.retrain.memory},
                     {"memory_groups", f.memory_groups},
                     {"replay_fraction", f.retrain.replay_fraction},
                     {"bandit_share", f.retrain.bandit_share},
                     {"pull_steps", f.retrain.pull_steps},
                     {"probe_samples", f.retrain.probe_samples},
                     {"importance_samples", f.retrain.regularizer.samples},
                     {"weight_budget", f.retrain.weight_budget},
                     {"weight_granularity", f.retrain.weight_granularity},
                     {"rows_per_group", f.retrain.rows_per_group},
                     {"lambda", f.lambda},
                     {"align_new_classes", f.retrain.align_new_classes},
                     {"validation_fraction", f.stream.validation_fraction},
                     {"chunk_samples", f.stream.train_samples}};
  if (!f.report.empty()) write_stream_report(f.report, report);
  if (f.json) {
    std::printf("%s\n", to_json(report).dump(2).c_str());
    return;
  }
  for (const StrategyReport& s : report.strategies) std::printf("%s\n", format_round_table(s, report.chunks).c_str());
  std::printf("%s", format_summary_table(report).c_str());
  if (!f.report.empty()) std::printf("report: %s/report.json, rounds.csv, report.svg\n", f.report.c_str());
  if (models_saved) std::printf("models: %s/<strategy>.safetensors (%lld)\n", f.save_models.c_str(),
                                static_cast<long long>(models_saved));
}

std::string presets_help() {
  return "\nStrategies (--strategy, --compare):\n"
         "  finetune  the new chunk only, every weight, no penalty\n"
         "  full      everything seen so far every round (warm-started full retraining)\n"
         "  replay    half of each batch new data, half uniform from the replay memory\n"
         "  ewc, si, mas   the new chunk with online EWC / SI / MAS\n"
         "  paper     bandit-chosen samples (EXP3.S over memory groups + new chunk) and weights\n"
         "            (Exp3.M over neuron blocks, 25 % budget) with the SNI penalty\n"
         "  bandit-ewc  the paper's bandits with online EWC instead of SNI: the best single change\n"
         "            to paper on validation data (bench/stream_sweep.py)\n"
         "  bandit-der  bandit-ewc whose replayed samples also keep the logits stored with them\n"
         "            (dark experience replay, --distill 0.1) and whose rounds that bring new classes\n"
         "            end with --prior-correction, online EWC at --lambda 30; each chosen on validation data\n"
         "  --samples new|all|replay|bandit:<policy>, --weights all|random|importance|bandit:<policy>,\n"
         "  --regularizer none|l2|ewc|online-ewc|si|mas|sni, --distill W,\n"
         "  --prior-correction on|off override a preset's choices.\n"
         "Every choice (rewards, --lambda auto, the strategy) reads the chunks' validation parts only;\n"
         "test parts are only reported. A round trains epochs x ceil(N / batch) steps, N the new\n"
         "chunk's samples (full: passes over everything seen).\n"
         "Under mpirun -np N every step's batch, every evaluation and every importance estimate\n"
         "is split across the ranks; rank 0 alone prints and writes. With --device cuda each rank\n"
         "takes one GPU and the gradients are summed by NCCL.\n";
}

}  // namespace

Command add_stream(CLI::App& app) {
  auto f = std::make_shared<StreamFlags>();
  f->retrain.seed = 1;
  CLI::App* cmd = app.add_subcommand("stream", "Retrain a model round after round on a stream of chunks; compare strategies");
  cmd->footer(presets_help() + "\nData specs: fashion-mnist[:train|:test], FILE.csv (label in column 0),\n"
              "  FEATURES:LABELS (IDX or .npy files, raw or .gz).\n\n" + model_spec_help());
  cmd->add_option("--data", f->data, "Training data spec the chunks are cut from")->capture_default_str();
  cmd->add_option("--test-data", f->test_data, "Test data spec (default: fashion-mnist:test for fashion-mnist)");
  cmd->add_option("--model", f->model, "Model spec (see below)")->capture_default_str();
  cmd->add_option("--scenario", f->stream.scenario, "split | permuted | rotated | drift | files")
      ->check(CLI::IsMember(stream_scenarios()))
      ->capture_default_str();
  cmd->add_option("--chunks", f->stream.chunks, "Chunks in the stream (the first trains the base model)")
      ->check(CLI::Range(2, 10000))
      ->capture_default_str();
  cmd->add_option("--chunk", f->stream.chunk_specs, "--scenario files: a chunk TRAIN[@TEST], in arrival order (repeat)");
  cmd->add_option("--holdout", f->stream.holdout, "--scenario files: test fraction of a chunk without @TEST")
      ->check(CLI::Range(0.01, 0.99))
      ->capture_default_str();
  cmd->add_option("--validation", f->stream.validation_fraction, "Fraction of each chunk's training data held out for every choice")
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  cmd->add_option("--chunk-samples", f->stream.train_samples, "Training samples per chunk (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--test-samples", f->stream.test_samples, "Test samples per chunk (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--rotation-step", f->stream.rotation_step, "rotated: degrees per chunk (0: 180 / chunks)")->capture_default_str();
  cmd->add_option("--initial-classes", f->stream.initial_classes, "drift: classes present from the first chunk (0: half)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--label-noise", f->stream.label_noise, "drift: fraction of training labels flipped")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  cmd->add_option("--strategy", f->strategy, "A preset (see below)")->capture_default_str();
  cmd->add_option("--compare", f->compare, "Several presets on the same stream and seed, e.g. finetune,full,replay,paper");
  cmd->add_option("--samples", f->samples, "Override: new | all | replay | bandit:<policy>");
  cmd->add_option("--weights", f->weights, "Override: all | random | importance | bandit:<policy>");
  cmd->add_option("--regularizer", f->regularizer, "Override: none | l2 | ewc | online-ewc | si | mas | sni");
  cmd->add_option("--distill", f->distill,
                  "Override: weight of the logit-matching term on replayed samples (dark experience replay; "
                  "0: off; default: the preset's, 0.1 for bandit-der, else 0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prior-correction", f->prior_correction,
                  "Override: on: after a round that brings a class never seen before, shift the output biases by "
                  "tau x (log of the class frequencies of every chunk seen - log of those the round trained on), "
                  "tau in 0, 0.25, .., 1 chosen on validation data (such a round's new classes fill half of every "
                  "batch); default: the preset's, on for bandit-der, else off")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--lambda", f->lambda, "Penalty strength; default: the preset's (bandit-der 30), else the regularizer's own (sni 0.03, mas 0.3, "
                  "online-ewc 300, si 1000); auto: each of a decade below, the default and a decade above trains a quarter of the first "
                  "round, the best on validation data is kept")
      ->capture_default_str();
  cmd->add_option("--importance-samples", f->retrain.regularizer.samples, "Samples each importance estimate reads (0: the whole chunk)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--epochs", f->retrain.epochs, "Passes' worth of the new chunk per round")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--batch-size", f->retrain.batch_size, "Samples per step")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer, "sgd (with momentum 0.9) or adam")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  cmd->add_option("--lr", f->lr, "Learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--lr-schedule", f->retrain.round_lr_schedule,
                  "Each round's rate: constant, or cosine (from --lr to 0 over the round's steps)")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  cmd->add_option("--memory", f->retrain.memory, "Replay memory size (samples)")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--memory-groups", f->memory_groups, "chunk | class | cluster (k-means of penultimate activations)")
      ->check(CLI::IsMember({"chunk", "class", "cluster"}))
      ->capture_default_str();
  cmd->add_option("--clusters", f->retrain.memory_clusters, "k for --memory-groups cluster")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--replay-fraction", f->retrain.replay_fraction, "Share of each batch drawn from memory (replay, bandit)")
      ->check(CLI::Range(0.0, 0.95))
      ->capture_default_str();
  cmd->add_flag("--align-new-classes", f->retrain.align_new_classes,
                "After a round that brings new classes, scale their output weights to the older classes' mean norm "
                "(weight aligning; class-incremental streams)");
  cmd->add_option("--bandit-share", f->retrain.bandit_share, "Share of the replay part from the sample bandit's pulled arm (the rest uniform)")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  cmd->add_option("--pull-steps", f->retrain.pull_steps, "Steps per sample-bandit pull")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--probe", f->retrain.probe_samples, "Validation samples whose loss drop rewards a pull")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--weight-budget", f->retrain.weight_budget, "Fraction of the weights a round may change")
      ->check(CLI::Range(0.001, 1.0))
      ->capture_default_str();
  cmd->add_option("--weight-granularity", f->retrain.weight_granularity, "layer | neuron (blocks of --rows-per-group)")
      ->check(CLI::IsMember({"layer", "neuron"}))
      ->capture_default_str();
  cmd->add_option("--rows-per-group", f->retrain.rows_per_group, "Output neurons (filters) per weight group")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--seed", f->retrain.seed, "The one seed every random choice derives from")->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024))->capture_default_str();
  add_device_option(cmd, f->device, "Train and evaluate");
  cmd->add_option("--report", f->report, "Folder for report.json, rounds.csv and report.svg");
  cmd->add_option("--save-models", f->save_models, "Folder for each strategy's model after its last round (<strategy>.safetensors)");
  cmd->add_flag("--json", f->json, "Print the report as JSON on stdout");
  cmd->add_flag("-q,--quiet", f->quiet, "No progress lines on stderr");
  return [f] { run_stream_command(*f); };
}

}  // namespace nnr::cli
