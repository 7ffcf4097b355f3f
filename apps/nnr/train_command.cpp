#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/nnr/commands.h"
#include "apps/nnr/data_parallel.h"
#include "apps/nnr/device.h"
#include "apps/nnr/progress.h"
#include "apps/trainer/continual_tasks.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/serving.h"
#include "regularizers/importance_state.h"
#include "apps/trainer/train_loop.h"
#include "apps/trainer/training_run.h"
#include "engine/core/collective.h"
#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"
#include "engine/nn/model_spec.h"

namespace nnr::cli {
namespace {

struct TrainFlags {
  std::string data, model = "mlp:784-256-256-10", output, init, eval_data, model_dir, strategy = "paper";
  int epochs = 5;
  int64_t batch_size = 128;
  std::string optimizer = "adam", schedule = "cosine", device = "cpu";
  float lr = 0.0f, momentum = 0.9f, weight_decay = 0.0f;  // lr 0: the optimizer's default
  uint64_t seed = 0;
  int threads = 0;
  bool json = false, quiet = false, cuda_graph = false;
};

// The output must be writable before hours of training, not after.
void check_output_writable(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (access(dir.c_str(), W_OK) != 0)
    throw InvalidArgument("[train] cannot write -o " + path + ": directory '" + dir + "' does not exist or is not writable");
}

// --model-dir: version 1 of a served model directory, trained as `nnr stream` trains its base model
// (the data's last --validation share held out for the retraining state, the stream's seeds).
// Under mpirun every rank trains its share of each global batch; rank 0 alone writes DIR/1 and
// prints, the other ranks end once it is written.
void run_train_model_dir(const TrainFlags& f, Collective* parallel) {
  if (!f.output.empty() || !f.init.empty() || f.cuda_graph)
    throw InvalidArgument("[train] --model-dir writes DIR/1 itself: it takes no -o, --init or --cuda-graph "
                          "(adopt a trained model with nnr retrain --init)");
  const bool root = !parallel || parallel->rank() == 0;
  const std::unique_ptr<Context> cuda = open_device(f.device, "train", parallel);
  ServingSetup setup;
  setup.model_spec = f.model;
  setup.strategy = strategy_preset(f.strategy);
  setup.retrain.epochs = f.epochs;
  setup.retrain.batch_size = f.batch_size;
  const float lr = f.lr > 0.0f ? f.lr : default_learning_rate(f.optimizer);
  setup.retrain.optimizer = OptimizerOptions{f.optimizer, lr, f.momentum, f.weight_decay};
  setup.retrain.base_lr_schedule = f.schedule;
  setup.retrain.seed = f.seed;
  setup.chunks.scenario = "files";
  setup.chunks.seed = derive_seed(f.seed, "stream");
  const std::string ranks_note =
      parallel ? ", data parallel on " + std::to_string(parallel->size()) + " ranks (" + parallel->name() + ")" : "";
  if (root)
    std::fprintf(stderr, "nnr train: %s on %s into %s (version 1 with its retraining state), seed %llu%s\n",
                 f.model.c_str(), f.data.c_str(), f.model_dir.c_str(), static_cast<unsigned long long>(f.seed),
                 ranks_note.c_str());
  const ServingRound r = start_model_dir(f.model_dir, f.data, setup, cuda.get(), parallel);
  if (parallel) {
    parallel->barrier();
    parallel->finish();
    if (!root) return;
  }
  if (f.json) {
    nlohmann::json j = to_json(r);
    if (parallel) j["data_parallel"] = {{"ranks", parallel->size()}, {"bytes_all_reduced", parallel->bytes_all_reduced()}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("trained %s for %d epochs in %.1f s; validation accuracy %.2f %%, test %.2f %%\n", f.model.c_str(),
              f.epochs, r.record.compute.train_seconds, 100.0 * r.new_validation_accuracy,
              100.0 * r.record.test_accuracy.front());
  std::printf("%s: version %lld written\n", f.model_dir.c_str(), static_cast<long long>(r.version));
}

// Under `mpirun -np N nnr train ...`: the run's collective (data_parallel.h), after refusing what
// train does not run in parallel (a CUDA graph); null for a single process.
Collective* train_collective(const TrainFlags& f) {
  if ((launched_ranks() > 1 || nccl_collective_forced()) && f.cuda_graph)
    throw InvalidArgument("[train] --cuda-graph is not data-parallel (the step all-reduces between backward and "
                          "update, which a replayed graph would skip): run without it under mpirun");
  return data_parallel_collective("train", f.device, f.batch_size, f.threads);
}

void run_train(const TrainFlags& f, bool model_given) {
  set_num_threads(f.threads);
  Collective* const parallel = train_collective(f);
  const bool root = !parallel || parallel->rank() == 0;
  if (!f.model_dir.empty()) return run_train_model_dir(f, parallel);
  if (f.output.empty()) throw InvalidArgument("[train] -o/--output is required (or --model-dir DIR)");
  if (f.cuda_graph && f.device != "cuda")
    throw InvalidArgument("[train] --cuda-graph needs --device cuda (it records the GPU training step as a CUDA graph)");
  if (root) check_output_writable(f.output);  // rank 0 alone writes it
  // Declared before the model and the optimizer: it must outlive their CUDA tensors. Data parallel:
  // on this rank's GPU.
  const std::unique_ptr<Context> cuda = open_device(f.device, "train", parallel);
  Dataset train = load_dataset(f.data);
  Dataset held_out;
  if (!f.eval_data.empty()) held_out = load_dataset(f.eval_data);

  Sequential model;
  bool has_importance = false;
  if (!f.init.empty()) {
    LoadedModel loaded = load_model(f.init, model_given ? f.model : "");
    model = std::move(loaded.model);
    // A served model's Ω and θ* travel with it: they are kept in the output unchanged.
    has_importance = restore_importance(model, loaded.file) > 0;
  } else {
    model = build_model(f.model, f.seed);
  }
  check_model_accepts(model, train.sample_shape(), train.num_classes, f.data);
  if (held_out.size()) check_model_accepts(model, held_out.sample_shape(), held_out.num_classes, f.eval_data);

  const float lr = f.lr > 0.0f ? f.lr : default_learning_rate(f.optimizer);
  auto optimizer = make_optimizer({f.optimizer, lr, f.momentum, f.weight_decay});
  const std::string ranks_note =
      parallel ? ", data parallel on " + std::to_string(parallel->size()) + " ranks (" + parallel->name() +
                     "; threads are per rank)"
               : "";
  if (root)
    std::fprintf(stderr, "nnr train: %s on %s (%lld samples), %s lr %g (%s), batch %lld, seed %llu, %d threads%s%s\n",
                 model.spec().c_str(), f.data.c_str(), static_cast<long long>(train.size()), optimizer->name(),
                 static_cast<double>(lr), f.schedule.c_str(), static_cast<long long>(f.batch_size),
                 static_cast<unsigned long long>(f.seed), num_threads(),
                 cuda ? (f.cuda_graph ? ", cuda, cuda graph" : ", cuda") : "", ranks_note.c_str());
  if (cuda) model.to(Device::CUDA, *cuda);
  const TrainingRunResult run =
      run_training(model, *optimizer, train, {f.epochs, f.batch_size, f.schedule, f.seed, f.cuda_graph}, cuda.get(),
                   parallel, make_progress_printer(f.quiet || !root));
  nlohmann::json epochs = nlohmann::json::array();
  for (size_t e = 0; e < run.epochs.size(); ++e)
    epochs.push_back({{"epoch", e + 1}, {"loss", run.epochs[e].loss}, {"seconds", run.epochs[e].seconds}});
  nlohmann::json graph_counts;
  if (run.graph)
    graph_counts = {{"warmups", run.graph->warmups}, {"recordings", run.graph->recordings}, {"replays", run.graph->replays}};
  nlohmann::json data_parallel;
  if (parallel)
    data_parallel = {{"ranks", parallel->size()},
                     {"backend", parallel->name()},
                     {"global_batch", f.batch_size},
                     {"steps", run.steps},
                     {"bytes_all_reduced_per_step", run.steps ? run.bytes_all_reduced / run.steps : 0}};
  // Evaluation and the output are rank 0's; the other ranks wait until it is written, so that the
  // run ends (on every rank) only once the output is there or rank 0 has failed.
  Evaluation held_out_result;
  if (root && held_out.size()) held_out_result = evaluate(model, held_out, 1000, cuda.get());
  if (cuda) model.to(Device::CPU, *cuda);  // saving reads the weights on the host
  if (root)
    save_model(f.output, model, has_importance ? importance_extras(model) : std::vector<ExtraTensor>{},
               {{"nnr.seed", std::to_string(f.seed)}, {"nnr.trained_on", f.data}});
  if (parallel) {
    parallel->barrier();
    parallel->finish();
    if (!root) return;
  }

  nlohmann::json report = {{"command", "train"},   {"model", model.spec()}, {"data", f.data},
                           {"samples", train.size()}, {"seed", f.seed},      {"epochs", epochs},
                           {"seconds", run.seconds}, {"output", f.output}};
  if (!graph_counts.is_null()) report["cuda_graph"] = graph_counts;
  if (!data_parallel.is_null()) report["data_parallel"] = data_parallel;
  if (held_out.size())
    report["eval"] = {{"data", f.eval_data}, {"accuracy", held_out_result.accuracy}, {"loss", held_out_result.loss}};
  if (f.json) {
    std::printf("%s\n", report.dump(2).c_str());
    return;
  }
  std::printf("trained %s for %d epochs in %.1f s (final train loss %.4f)\n", model.spec().c_str(), f.epochs, run.seconds,
              epochs.empty() ? 0.0 : epochs.back()["loss"].get<double>());
  if (held_out.size())
    std::printf("%s: accuracy %.2f %%, loss %.4f\n", f.eval_data.c_str(),
                100.0 * report["eval"]["accuracy"].get<double>(), report["eval"]["loss"].get<double>());
  std::printf("saved %s\n", f.output.c_str());
}

}  // namespace

Command add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from scratch, or from --init weights");
  cmd->footer(std::string("\nData specs: fashion-mnist[:train|:test], FILE.csv (label in column 0),\n"
                          "  FEATURES:LABELS (IDX or .npy files, raw or .gz).\n\n") +
              model_spec_help());
  cmd->add_option("--data", f->data, "Training data spec")->required();
  CLI::Option* model = cmd->add_option("--model", f->model, "Model spec (see below)")->capture_default_str();
  cmd->add_option("-o,--output", f->output, "Where to write the trained model (.safetensors)");
  cmd->add_option("--model-dir", f->model_dir,
                  "Instead of -o: start a versioned model directory for nnr retrain (writes DIR/1 with the "
                  "retraining state; 10 % of the data is held out as its validation part)");
  cmd->add_option("--strategy", f->strategy, "With --model-dir: the retraining strategy its rounds use")
      ->capture_default_str();
  cmd->add_option("--init", f->init, "Start from these weights (safetensors, e.g. a served model)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--eval-data", f->eval_data, "Evaluate on this data spec after training");
  cmd->add_option("--epochs", f->epochs, "Passes over the data")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--batch-size", f->batch_size, "Samples per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer, "adam, or sgd (with --momentum)")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  cmd->add_option("--lr", f->lr, "Learning rate (default: 0.002 for adam, 0.05 for sgd)")->check(CLI::PositiveNumber);
  cmd->add_option("--lr-schedule", f->schedule, "constant, or cosine: decay from --lr to 0 over the run")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  cmd->add_option("--momentum", f->momentum, "SGD momentum")->check(CLI::Range(0.0f, 0.9999f))->capture_default_str();
  cmd->add_option("--weight-decay", f->weight_decay, "L2 weight decay")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--seed", f->seed, "Seed of every random choice (init, shuffling, dropout)")->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024))->capture_default_str();
  add_device_option(cmd, f->device, "Train");
  cmd->add_flag("--cuda-graph", f->cuda_graph,
                "With --device cuda: record one training step as a CUDA graph and replay it for every batch "
                "(fewer kernel launches; for small models; not with dropout)");
  cmd->add_flag("--json", f->json, "Print the result as JSON on stdout");
  cmd->add_flag("-q,--quiet", f->quiet, "No progress lines on stderr");
  return [f, model] { run_train(*f, model->count() > 0); };
}

}  // namespace nnr::cli
