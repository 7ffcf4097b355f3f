// Times one selective retraining step (zero_grad, forward, loss, backward, masked optimizer step)
// at several weight budgets, as a ratio to the full step of the same model in the same run.
// The masks are built as a retraining round builds them (Retrainer::choose_weights,
// apps/trainer/retraining.cpp): the output layer stays open and counts toward the budget, the
// other parameters are arms of a bandits::WeightSelector (whole layers at "layer" granularity,
// blocks of --rows-per-group output neurons / filters at "neuron" granularity) with the budget
// left over, filled in the order of a seeded uniform policy.
//
// Each repetition times, for every (granularity, budget) in turn, one block of --steps full steps
// and right after it one block of --steps steps with that configuration's masks, each after
// --warmup untimed steps with its masks; a configuration's ratio is the median over --repeats of
// (its block / the full block just before it), so machine load that drifts cancels. One fixed batch of random
// inputs and labels, so the data loading is not timed.
//
//   bench_selective_step [--model mlp:784-400-400-10 --model cnn:...] [--batch 128]
//                        [--budgets 1,0.5,0.25,0.1] [--granularity layer --granularity neuron]
//                        [--rows-per-group 16] [--warmup 3] [--steps 10] [--repeats 9]
//                        [--threads 2] [--seed 0] [--phases]
// Prints one JSON object: per model, granularity and budget, ms_per_step (median), ratio_to_full
// (median of per-repetition ratios), open_fraction (the parameters the masks open) and the FLOPs
// one step's layers execute (engine/nn/compute_counts.h) with their ratio to the full step's: the
// work the selective backward skips, which machine load does not blur.
// --phases adds, per configuration, the median ms of each phase of a step (zero_grad, forward,
// loss, backward, optimizer step) and of each tape node's backward, over --steps extra steps timed
// phase by phase (the clock reads cost a little, so these do not add up to ms_per_step exactly):
// the profile of where a selective step's time goes.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bandits/factory.h"
#include "bandits/selectors/weight_selector.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/core/threads.h"
#include "engine/nn/compute_counts.h"
#include "engine/nn/loss.h"
#include "engine/nn/model_spec.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"

using namespace nnr;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Config {
  std::string granularity;  // "full" for the reference step
  double budget = 1.0;
  std::vector<UpdateMask> masks;  // one per model parameter
  double open_fraction = 1.0;
  std::vector<double> ms, ratio;
  std::vector<std::vector<double>> phase_ms;  // --phases: [phase][step]
  std::vector<std::vector<double>> node_ms;   // --phases: [tape node][step] of its backward
  ComputeCounts flops;                        // one step's, every layer summed
};

const char* const kPhaseNames[] = {"zero_grad", "forward", "loss", "backward", "optimizer_step"};
constexpr size_t kPhases = 5;

// The masks of one retraining round at `budget` (a fraction of all the model's weights).
std::vector<UpdateMask> round_masks(Sequential& model, double budget, const std::string& granularity,
                                    int64_t rows_per_group, uint64_t seed) {
  const std::vector<Parameter*> params = model.parameters();
  std::vector<UpdateMask> masks(params.size(), UpdateMask::all());
  if (budget >= 1.0) return masks;
  std::vector<Parameter*> head;
  for (size_t l = model.size(); l-- > 0 && head.empty();) head = model.layer(l).parameters();
  int64_t head_numel = 0;
  for (Parameter* p : head) head_numel += p->value.numel();
  std::vector<size_t> selectable;
  std::vector<bandits::ParameterInfo> infos;
  for (size_t i = 0; i < params.size(); ++i)
    if (std::find(head.begin(), head.end(), params[i]) == head.end()) {
      selectable.push_back(i);
      infos.push_back({params[i]->name, params[i]->value.shape(), ""});
    }
  const double total = static_cast<double>(model.parameter_count());
  const double left = budget * total - static_cast<double>(head_numel);
  if (infos.empty() || left <= 0.0)
    throw InvalidArgument("[bench_selective_step] a budget of " + std::to_string(budget) +
                          " does not cover the output layer");
  bandits::WeightSelectorOptions wo;
  wo.rows_per_group = granularity == "layer" ? 0 : rows_per_group;
  wo.seed = derive_seed(seed, "weights.rows");
  wo.budget_fraction = std::min(1.0, left / (total - static_cast<double>(head_numel)));
  bandits::WeightSelector selector(
      std::move(infos),
      bandits::make_policy("uniform", {{"seed", static_cast<double>(derive_seed(seed, "bandit.weights") >> 11)}}), wo);
  const std::vector<UpdateMask> chosen = selector.select();
  for (size_t k = 0; k < selectable.size(); ++k) masks[selectable[k]] = chosen[k];
  return masks;
}

int run(int argc, char** argv) {
  CLI::App app{"Time a selective retraining step at several weight budgets, as ratios to the full step"};
  std::vector<std::string> specs{"mlp:784-400-400-10", "cnn:1x28x28-c32-p-c64-p-f128-10"};
  std::vector<std::string> granularities{"layer", "neuron"};
  std::vector<double> budgets{1.0, 0.5, 0.25, 0.1};
  int64_t batch = 128, rows_per_group = 16;
  int warmup = 3, steps = 10, repeats = 9, threads = 2;
  uint64_t seed = 0;
  bool phases = false;
  app.add_option("--model", specs, "Model specs")->capture_default_str();
  app.add_option("--granularity", granularities, "layer and/or neuron")
      ->capture_default_str()
      ->check(CLI::IsMember({"layer", "neuron"}));
  app.add_option("--budgets", budgets, "Weight budgets in (0, 1]")->delimiter(',')->capture_default_str();
  app.add_option("--batch", batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--rows-per-group", rows_per_group, "Neuron granularity: rows per group")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed steps before each block")->capture_default_str();
  app.add_option("--steps", steps, "Timed steps per block")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "Blocks per configuration")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the weights, inputs, labels and masks")->capture_default_str();
  app.add_flag("--phases", phases, "Also time each phase of a step and each tape node's backward");
  CLI11_PARSE(app, argc, argv);
  for (double b : budgets)
    if (!(b > 0.0 && b <= 1.0)) throw InvalidArgument("[bench_selective_step] budgets must lie in (0, 1]");
  set_num_threads(threads);

  nlohmann::json results = nlohmann::json::array();
  for (const std::string& spec : specs) {
    Sequential model = build_model(spec, seed);
    Shape x_shape{batch}, one_sample{1};
    for (int64_t d : model_input_shape(spec)) x_shape.push_back(d), one_sample.push_back(d);
    const int32_t classes = static_cast<int32_t>(model.output_shape(one_sample).back());
    Rng rng(seed + 1);
    Tensor x(x_shape);
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(rng.normal());
    std::vector<int32_t> labels(static_cast<size_t>(batch));
    for (auto& y : labels) y = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));

    const std::vector<Parameter*> params = model.parameters();
    const double total = static_cast<double>(model.parameter_count());
    std::vector<Config> configs;
    configs.push_back(
        {"full", 1.0, std::vector<UpdateMask>(params.size(), UpdateMask::all()), 1.0, {}, {}, {}, {}, {}});
    for (const std::string& g : granularities)
      for (double b : budgets) {
        Config c{g, b, round_masks(model, b, g, rows_per_group, seed), 0.0, {}, {}, {}, {}, {}};
        int64_t open = 0;
        for (size_t i = 0; i < params.size(); ++i) open += c.masks[i].count(params[i]->value.numel(), params[i]->rows());
        c.open_fraction = static_cast<double>(open) / total;
        configs.push_back(std::move(c));
      }

    // SGD with momentum, as `nnr train` and the retraining rounds default to; a small rate keeps
    // the weights (and so the timings) from drifting far during the run.
    auto opt = make_optimizer({"sgd", 1e-4f, 0.9f, 0.0f});
    Tape tape;
    SoftmaxCrossEntropy loss;
    auto step = [&] {
      model.zero_grad();
      tape.clear();
      model.forward(x, tape);
      tape.apply_loss(loss, labels);
      tape.backward();
      opt->step(params);
    };
    auto time_block = [&](Config& c) {
      for (size_t i = 0; i < params.size(); ++i) params[i]->mask = c.masks[i];
      for (int i = 0; i < warmup; ++i) step();
      const auto start = Clock::now();
      for (int i = 0; i < steps; ++i) step();
      c.ms.push_back(1e3 * std::chrono::duration<double>(Clock::now() - start).count() / steps);
      return c.ms.back();
    };
    // Each selective block right after a full block: its ratio compares neighbours in time.
    for (int r = 0; r < repeats; ++r)
      for (size_t k = 1; k < configs.size(); ++k) {
        const double full = time_block(configs[0]);
        configs[k].ratio.push_back(time_block(configs[k]) / full);
      }
    configs[0].ratio.assign(1, 1.0);
    for (Config& c : configs) {
      for (size_t i = 0; i < params.size(); ++i) params[i]->mask = c.masks[i];
      model.reset_compute_counts();
      step();
      c.flops = model.compute_counts();
    }
    if (phases) {
      // The same step as `step`, with a clock read between phases and after each node's backward.
      std::vector<Clock::time_point> node_done;
      tape.set_observer([&](size_t node, Layer&, const Tensor&, const Tensor&, const Tensor&) {
        node_done[node] = Clock::now();
      });
      for (Config& c : configs) {
        for (size_t i = 0; i < params.size(); ++i) params[i]->mask = c.masks[i];
        c.phase_ms.assign(kPhases, {});
        c.node_ms.assign(model.size(), {});
        for (int i = 0; i < warmup + steps; ++i) {
          Clock::time_point t[kPhases + 1];
          t[0] = Clock::now();
          model.zero_grad();
          tape.clear();
          t[1] = Clock::now();
          model.forward(x, tape);
          t[2] = Clock::now();
          tape.apply_loss(loss, labels);
          t[3] = Clock::now();
          node_done.assign(model.size(), Clock::time_point());
          tape.backward();
          t[4] = Clock::now();
          opt->step(params);
          t[5] = Clock::now();
          if (i < warmup) continue;
          for (size_t p = 0; p < kPhases; ++p)
            c.phase_ms[p].push_back(1e3 * std::chrono::duration<double>(t[p + 1] - t[p]).count());
          // Nodes run backward from the last; a node that did not run (below the lowest open layer) took 0.
          Clock::time_point before = t[3];
          for (size_t n = model.size(); n-- > 0;) {
            const bool ran = node_done[n] != Clock::time_point();
            c.node_ms[n].push_back(ran ? 1e3 * std::chrono::duration<double>(node_done[n] - before).count() : 0.0);
            if (ran) before = node_done[n];
          }
        }
      }
      tape.set_observer(nullptr);
    }
    for (const Config& c : configs) {
      nlohmann::json row = {{"model", spec},
                            {"granularity", c.granularity},
                            {"budget", c.budget},
                            {"open_fraction", c.open_fraction},
                            {"ms_per_step", median(c.ms)},
                            {"ratio_to_full", median(c.ratio)},
                            {"ratios", c.ratio},
                            {"flops", {{"forward", c.flops.forward_flops},
                                       {"input_grad", c.flops.input_grad_flops},
                                       {"weight_grad", c.flops.weight_grad_flops}}},
                            {"flop_ratio_to_full", static_cast<double>(c.flops.total()) /
                                                       static_cast<double>(configs[0].flops.total())}};
      if (phases) {
        nlohmann::json phase_medians = nlohmann::json::object(), node_medians = nlohmann::json::array();
        for (size_t p = 0; p < kPhases; ++p) phase_medians[kPhaseNames[p]] = median(c.phase_ms[p]);
        for (size_t n = 0; n < c.node_ms.size(); ++n)
          node_medians.push_back(
              {{"node", n}, {"layer", model.layer(n).describe()}, {"backward_ms", median(c.node_ms[n])}});
        // What the masks open, per parameter: rows and their runs of adjacent rows.
        nlohmann::json opened = nlohmann::json::array();
        for (size_t i = 0; i < params.size(); ++i) {
          const UpdateMask& m = c.masks[i];
          int64_t rows = params[i]->rows(), runs = 1;
          if (m.kind == UpdateMask::Kind::Rows) {
            rows = static_cast<int64_t>(m.rows.size());
            runs = 0;
            for (size_t k = 0; k < m.rows.size(); ++k) runs += k == 0 || m.rows[k] != m.rows[k - 1] + 1;
          }
          opened.push_back(
              {{"parameter", params[i]->name}, {"open_rows", rows}, {"of", params[i]->rows()}, {"runs", runs}});
        }
        row["open_rows"] = opened;
        row["phases_ms"] = phase_medians;
        row["backward_ms_per_node"] = node_medians;
      }
      results.push_back(std::move(row));
    }
  }
  const nlohmann::json out = {{"engine", "nnr"},          {"batch", batch},   {"threads", threads},
                              {"rows_per_group", rows_per_group}, {"warmup", warmup}, {"steps", steps},
                              {"repeats", repeats},       {"seed", seed},     {"results", results}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_selective_step: %s\n", e.what());
    return 1;
  }
}
