#include "apps/trainer/serving.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>

#include "apps/trainer/model_dir.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/model_spec.h"
#include "regularizers/importance_state.h"

namespace nnr {
namespace {

constexpr const char* kStateMeta = "nnr.state";
constexpr const char* kStateFormat = "nnr.serving-state";
constexpr int kStateVersion = 1;

nlohmann::json setup_to_json(const ServingSetup& s) {
  const RetrainOptions& r = s.retrain;
  const RegularizerOptions& g = r.regularizer;
  return {
      {"model_spec", s.model_spec},
      {"strategy", {{"name", s.strategy.name}, {"samples", s.strategy.samples}, {"weights", s.strategy.weights},
                    {"regularizer", s.strategy.regularizer}, {"distill", s.strategy.distill},
                    {"prior_correction", s.strategy.prior_correction}, {"lambda", s.strategy.lambda}}},
      {"retrain",
       {{"epochs", r.epochs}, {"batch_size", r.batch_size},
        {"optimizer", {{"name", r.optimizer.name}, {"lr", r.optimizer.lr}, {"momentum", r.optimizer.momentum},
                       {"weight_decay", r.optimizer.weight_decay}}},
        {"memory", r.memory}, {"memory_grouping", to_string(r.memory_grouping)}, {"memory_clusters", r.memory_clusters},
        {"replay_fraction", r.replay_fraction}, {"bandit_share", r.bandit_share}, {"pull_steps", r.pull_steps},
        {"probe_samples", r.probe_samples}, {"reward_gradient_samples", r.reward_gradient_samples},
        {"weight_budget", r.weight_budget}, {"weight_granularity", r.weight_granularity},
        {"rows_per_group", r.rows_per_group}, {"lambda", r.lambda}, {"lambda_pilot_fraction", r.lambda_pilot_fraction},
        {"base_lr_schedule", r.base_lr_schedule}, {"round_lr_schedule", r.round_lr_schedule}, {"align_new_classes", r.align_new_classes}, {"seed", r.seed},
        {"regularizer", {{"gamma", g.gamma}, {"samples", g.samples}, {"batch_size", g.batch_size},
                         {"sampled_fisher", g.sampled_fisher}, {"si_damping", g.si_damping}, {"synapse", g.synapse},
                         {"synapse_weight", g.synapse_weight}, {"neuron_out_weight", g.neuron_out_weight},
                         {"neuron_in_weight", g.neuron_in_weight}}}}},
      {"chunks", {{"validation_fraction", s.chunks.validation_fraction}, {"holdout", s.chunks.holdout},
                  {"seed", s.chunks.seed}}}};
}

ServingSetup setup_from_json(const nlohmann::json& j) {
  ServingSetup s;
  s.model_spec = j.at("model_spec").get<std::string>();
  const auto& st = j.at("strategy");
  s.strategy.name = st.at("name").get<std::string>();
  s.strategy.samples = st.at("samples").get<std::string>();
  s.strategy.weights = st.at("weights").get<std::string>();
  s.strategy.regularizer = st.at("regularizer").get<std::string>();
  s.strategy.distill = st.value("distill", 0.0f);  // absent in states written before it existed
  s.strategy.prior_correction = st.value("prior_correction", false);  // likewise
  s.strategy.lambda = st.value("lambda", -1.0f);  // likewise: those states resolve λ as before
  const auto& r = j.at("retrain");
  RetrainOptions& o = s.retrain;
  o.epochs = r.at("epochs").get<int>();
  o.batch_size = r.at("batch_size").get<int64_t>();
  const auto& opt = r.at("optimizer");
  o.optimizer = OptimizerOptions{opt.at("name").get<std::string>(), opt.at("lr").get<float>(),
                                 opt.at("momentum").get<float>(), opt.at("weight_decay").get<float>()};
  o.memory = r.at("memory").get<int64_t>();
  o.memory_grouping = parse_memory_grouping(r.at("memory_grouping").get<std::string>());
  o.memory_clusters = r.at("memory_clusters").get<int>();
  o.replay_fraction = r.at("replay_fraction").get<double>();
  o.bandit_share = r.at("bandit_share").get<double>();
  o.pull_steps = r.at("pull_steps").get<int>();
  o.probe_samples = r.at("probe_samples").get<int64_t>();
  o.reward_gradient_samples = r.at("reward_gradient_samples").get<int64_t>();
  o.weight_budget = r.at("weight_budget").get<double>();
  o.weight_granularity = r.at("weight_granularity").get<std::string>();
  o.rows_per_group = r.at("rows_per_group").get<int64_t>();
  o.lambda = r.at("lambda").get<float>();
  o.align_new_classes = r.value("align_new_classes", false);  // absent in states written before it existed
  o.lambda_pilot_fraction = r.at("lambda_pilot_fraction").get<double>();
  o.base_lr_schedule = r.at("base_lr_schedule").get<std::string>();
  o.round_lr_schedule = r.value("round_lr_schedule", std::string("constant"));  // absent in older states
  o.seed = r.at("seed").get<uint64_t>();
  const auto& g = r.at("regularizer");
  o.regularizer.gamma = g.at("gamma").get<float>();
  o.regularizer.samples = g.at("samples").get<int64_t>();
  o.regularizer.batch_size = g.at("batch_size").get<int64_t>();
  o.regularizer.sampled_fisher = g.at("sampled_fisher").get<bool>();
  o.regularizer.si_damping = g.at("si_damping").get<float>();
  o.regularizer.synapse = g.at("synapse").get<std::string>();
  o.regularizer.synapse_weight = g.at("synapse_weight").get<float>();
  o.regularizer.neuron_out_weight = g.at("neuron_out_weight").get<float>();
  o.regularizer.neuron_in_weight = g.at("neuron_in_weight").get<float>();
  const auto& c = j.at("chunks");
  s.chunks.scenario = "files";
  s.chunks.validation_fraction = c.at("validation_fraction").get<double>();
  s.chunks.holdout = c.at("holdout").get<double>();
  s.chunks.seed = c.at("seed").get<uint64_t>();
  return s;
}

void write_version_files(const std::string& temp_path, Retrainer& retrainer, const ServingSetup& setup) {
  Sequential& model = retrainer.model();
  save_model(temp_path + "/" + kModelFile, model);
  const Retrainer::SavedState state = retrainer.save_state();
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (const auto& named : importance_tensors(model)) tensors.push_back(named);
  for (const auto& [name, value] : state.tensors) tensors.emplace_back(name, &value);
  const nlohmann::json meta = {{"format", kStateFormat}, {"version", kStateVersion}, {"setup", setup_to_json(setup)},
                               {"retrainer", state.meta}};
  save_checkpoint(temp_path + "/" + kStateFile, tensors, {{kStateMeta, meta.dump()}, {kMetaModelSpec, model.spec()}});
}

struct Restored {
  ServingSetup setup;
  std::unique_ptr<Retrainer> retrainer;
};

// lr_scale scales the learning rate the Retrainer trains with; r.setup keeps the stored options.
// A data-parallel round's Retrainer gets the collective (not stored).
Restored restore(const ModelVersion& version, float lr_scale = 1.0f, Collective* collective = nullptr) {
  const std::string state_path = version.path + "/" + kStateFile;
  LoadedModel loaded = load_model(version.path + "/" + kModelFile);
  const Checkpoint state = load_checkpoint(state_path);
  const auto meta_text = state.metadata.find(kStateMeta);
  if (meta_text == state.metadata.end())
    throw Error("[retrain] " + state_path + ": not an nnr retraining state (no " + kStateMeta + " metadata)");
  Restored r;
  try {
    const nlohmann::json meta = nlohmann::json::parse(meta_text->second);
    if (meta.value("format", "") != kStateFormat || meta.value("version", 0) != kStateVersion)
      throw Error("[retrain] " + state_path + ": unknown state format");
    r.setup = setup_from_json(meta.at("setup"));
    if (r.setup.model_spec != loaded.model.spec())
      throw Error("[retrain] " + state_path + " belongs to a " + r.setup.model_spec + " model, but " + version.path +
                  "/" + kModelFile + " is " + loaded.model.spec());
    restore_importance(loaded.model, state);
    RetrainOptions options = r.setup.retrain;
    options.optimizer.lr *= lr_scale;
    options.collective = collective;
    r.retrainer = std::make_unique<Retrainer>(std::move(loaded.model), r.setup.strategy, options);
    std::map<std::string, Tensor> tensors;
    for (const NamedTensor& t : state.tensors)
      if (t.name.rfind(kOmegaPrefix, 0) != 0 && t.name.rfind(kAnchorPrefix, 0) != 0) tensors[t.name] = t.value.clone();
    r.retrainer->load_state(meta.at("retrainer"), tensors);
  } catch (const nlohmann::json::exception& e) {
    throw Error("[retrain] " + state_path + ": malformed state: " + e.what());
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(state_path) != std::string::npos || what.find(version.path) != std::string::npos) throw;
    throw Error("[retrain] " + state_path + ": " + what);
  }
  return r;
}

void require_no_version(const std::string& dir) {
  if (const auto v = newest_version(dir))
    throw InvalidArgument("[retrain] " + dir + " already holds version " + std::to_string(v->number) +
                          "; retrain it with nnr retrain --model-dir " + dir + " --data NEW");
}

// Version 1 of a directory from a model that already knows chunk 0.
// The directory is created only once version 1 is ready to be written (bad input leaves none behind);
// if another writer wrote a version 1 meanwhile, the commit refuses to replace it.
// Data parallel (setup.retrain.collective of several ranks): every rank estimates its share of the
// importance and evaluates its share; rank 0 alone writes, and the others wait until it has (the
// broadcast of the version number; when rank 0 fails the launcher ends them).
ServingRound first_version(const std::string& dir, Sequential model, const StreamChunk& chunk,
                           const ServingSetup& setup, const RoundCompute& base) {
  Collective* const collective = setup.retrain.collective;
  const bool parallel = collective && collective->size() > 1;
  Retrainer retrainer(std::move(model), setup.strategy, setup.retrain);
  retrainer.adopt_base(chunk);
  ServingRound out;
  out.record.round = 0;
  out.record.chunk = chunk.name;
  out.record.compute = base;
  out.record.test_accuracy = {evaluate(retrainer.model(), chunk.test, 1000, nullptr, parallel ? collective : nullptr).accuracy};
  out.new_validation_accuracy = out.record.validation_accuracy = retrainer.validation_accuracy(nullptr);
  if (!parallel || collective->rank() == 0) {
    VersionWriter writer(dir);
    write_version_files(writer.temp_path(), retrainer, setup);
    out.version = writer.commit().number;
  }
  if (parallel) collective->broadcast(&out.version, sizeof out.version, 0);
  return out;
}

}  // namespace

ServingRound start_model_dir(const std::string& dir, const std::string& data_spec, const ServingSetup& setup,
                             Context* cuda, Collective* collective) {
  require_no_version(dir);
  validate_strategy(setup.strategy);
  const StreamChunk chunk = make_file_chunk(data_spec, 0, setup.chunks);
  Sequential model = build_model(setup.model_spec, derive_seed(setup.retrain.seed, "init"));
  check_model_accepts(model, chunk.train.sample_shape(), chunk.train.num_classes, data_spec);
  RetrainOptions base_options = setup.retrain;
  base_options.cuda = cuda;
  base_options.collective = collective;
  const RoundCompute base = train_base(model, chunk, base_options);
  ServingSetup with_ranks = setup;  // the collective is not stored (setup_to_json)
  with_ranks.retrain.collective = collective;
  return first_version(dir, std::move(model), chunk, with_ranks, base);
}

ServingRound adopt_model_dir(const std::string& dir, const std::string& init_file, const std::string& memory_data_spec,
                             ServingSetup setup) {
  require_no_version(dir);
  validate_strategy(setup.strategy);
  LoadedModel loaded = load_model(init_file, setup.model_spec);
  setup.model_spec = loaded.model.spec();
  const StreamChunk chunk = make_file_chunk(memory_data_spec, 0, setup.chunks);
  check_model_accepts(loaded.model, chunk.train.sample_shape(), chunk.train.num_classes, memory_data_spec);
  // Ω and θ* the file brings are replaced by the estimate on the memory data.
  return first_version(dir, std::move(loaded.model), chunk, setup, RoundCompute{});
}

ServingRound retrain_model_dir(const std::string& dir, const std::string& data_spec, double max_regression,
                               Context* cuda, NonFinitePolicy on_nonfinite, const std::string& strategy,
                               Collective* collective) {
  if (!(max_regression >= 0.0)) throw InvalidArgument("[retrain] --max-regression must be >= 0 points");
  Collective* const parallel = collective && collective->size() > 1 ? collective : nullptr;
  const bool root = !parallel || parallel->rank() == 0;
  const std::optional<ModelVersion> newest = newest_version(dir);
  if (!newest)
    throw InvalidArgument("[retrain] " + dir + " holds no model version: start it with nnr train --model-dir " + dir +
                          " or nnr retrain --model-dir " + dir + " --init FILE --memory-data SPEC");
  // The lock is held from here to the commit: a second retrain fails at once instead of training.
  // Data parallel: rank 0 holds it and says which version the round starts from (versions on disk
  // are whole and never change, so the other ranks read it without the lock).
  std::optional<VersionWriter> writer;
  if (root) writer.emplace(dir);
  int64_t base_number = root ? newest_version(dir)->number : 0;
  if (parallel) parallel->broadcast(&base_number, sizeof base_number, 0);
  const ModelVersion base{base_number, dir + "/" + std::to_string(base_number)};
  Restored restored = restore(base, 1.0f, parallel);
  if (!strategy.empty() && strategy != restored.setup.strategy.name)
    throw InvalidArgument("[retrain] " + dir + " was started with strategy " + restored.setup.strategy.name +
                          " and its rounds keep it (its state is that strategy's); --strategy " + strategy +
                          " needs a new directory");
  restored.retrainer->set_device(cuda);
  const StreamChunk chunk = make_file_chunk(data_spec, restored.retrainer->rounds() + 1, restored.setup.chunks);
  check_model_accepts(restored.retrainer->model(), chunk.train.sample_shape(), chunk.train.num_classes, data_spec);

  ServingRound out;
  out.base_version = base.number;
  out.old_validation_accuracy = restored.retrainer->validation_accuracy(&chunk.validation);
  try {
    out.record = restored.retrainer->round(chunk);
  } catch (const NonFiniteError& e) {
    if (on_nonfinite != NonFinitePolicy::Retry) throw;
    // The diverged Retrainer is unusable: version n again, from disk, at half the learning rate.
    // restored.setup (what the new version stores) keeps the directory's options.
    constexpr float kRetryScale = 0.5f;
    out.retried = true;
    out.retry_reason = e.what();
    Restored again = restore(base, kRetryScale, parallel);
    out.retry_lr = restored.setup.retrain.optimizer.lr * kRetryScale;
    restored.retrainer = std::move(again.retrainer);
    restored.retrainer->set_device(cuda);
    try {
      out.record = restored.retrainer->round(chunk);
    } catch (const NonFiniteError& e2) {
      std::ostringstream msg;
      msg << e2.what() << " (the retry at lr " << out.retry_lr << "; the first attempt at lr "
          << restored.setup.retrain.optimizer.lr << ": " << e.what() << ")";
      throw NonFiniteError(msg.str());
    }
  }
  Retrainer& retrainer = *restored.retrainer;
  out.new_validation_accuracy = retrainer.validation_accuracy(nullptr);
  const double drop_points = 100.0 * (out.old_validation_accuracy - out.new_validation_accuracy);
  if (drop_points > max_regression) {
    out.refused = true;
    char buffer[256];
    std::snprintf(buffer, sizeof buffer,
                  "the candidate's validation accuracy %.2f %% is %.2f points below version %lld's %.2f %% "
                  "(--max-regression %.2f)",
                  100.0 * out.new_validation_accuracy, drop_points, static_cast<long long>(base.number),
                  100.0 * out.old_validation_accuracy, max_regression);
    out.reason = buffer;
    return out;  // the writer's destructor removes its temporary folder: DIR is as it was
  }
  if (root) {
    write_version_files(writer->temp_path(), retrainer, restored.setup);
    out.version = writer->commit().number;
  }
  if (parallel) {
    // The other ranks end once the version is on disk (or rank 0 has failed and the launcher ends them).
    parallel->broadcast(&out.version, sizeof out.version, 0);
  }
  return out;
}

nlohmann::json to_json(const ServingRound& r) {
  nlohmann::json j = {{"version", r.version},
                      {"base_version", r.base_version},
                      {"refused", r.refused},
                      {"old_validation_accuracy", r.old_validation_accuracy},
                      {"new_validation_accuracy", r.new_validation_accuracy},
                      {"round", r.record.round},
                      {"chunk", r.record.chunk},
                      {"test_accuracy", r.record.test_accuracy},
                      {"lambda", r.record.lambda},
                      {"choices", r.record.choices},
                      {"compute", {{"train_flops", r.record.compute.train_flops()},
                                   {"other_flops", r.record.compute.other_flops},
                                   {"samples", r.record.compute.samples},
                                   {"parameters_updated", r.record.compute.parameters_updated},
                                   {"train_seconds", r.record.compute.train_seconds},
                                   {"round_seconds", r.record.compute.round_seconds}}}};
  if (r.refused) j["reason"] = r.reason;
  j["retried"] = r.retried;
  if (r.retried) {
    char lr[32];
    std::snprintf(lr, sizeof lr, "%.7g", static_cast<double>(r.retry_lr));  // 0.015, not 0.014999999664723873
    j["retry"] = {{"lr", std::stod(lr)}, {"reason", r.retry_reason}};
  }
  return j;
}

NonFinitePolicy parse_nonfinite_policy(const std::string& name) {
  if (name == "fail") return NonFinitePolicy::Fail;
  if (name == "retry") return NonFinitePolicy::Retry;
  throw InvalidArgument("[retrain] unknown --on-nonfinite policy '" + name + "' (valid: fail, retry)");
}

}  // namespace nnr
