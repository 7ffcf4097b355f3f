// regularizers_permuted: permuted Fashion-MNIST, one model trained on the tasks in order with
// each regularizer at each λ of its sweep; prints the average accuracy over all tasks after
// the last one, the best λ per strategy, the SNI ablation and the time importance estimation
// takes against one training epoch; --json writes the measured results.
//   regularizers_permuted --sweep ewc=1,10,100 --sweep mas=0.1,1 --train-samples 20000 --json out.json
// A strategy is "finetune" (no penalty), a regularizer name (l2, ewc, online-ewc, si, mas, sni),
// or an SNI ablation: "sni-synapse-only" (a=1, b=c=0) or "sni-neuron-only" (a=0, b=c=1).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/trainer/continual_tasks.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"
#include "engine/nn/model_spec.h"

using namespace nnr;

namespace {

// A λ as the user typed it: `value` the parsed double (what the JSON stores, so 0.3 stays 0.3
// instead of the float 0.30000001192092896), `text` its %g spelling (table and JSON keys).
struct Lambda {
  double value;
  std::string text;
};

struct Sweep {
  std::string strategy;
  std::vector<Lambda> lambdas;
};

std::string fmt(double v, const char* f = "%.4f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A float option rounded to 6 significant digits (a float's precision) as a double, so that the
// JSON prints 0.01 rather than 0.009999999776482582.
double tidy(float v) { return std::stod(fmt(v, "%.6g")); }

Sweep parse_sweep(const std::string& s) {
  const size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0) throw InvalidArgument("[bench] --sweep wants NAME=L1,L2,..., got " + s);
  Sweep w{s.substr(0, eq), {}};
  std::stringstream rest(s.substr(eq + 1));
  std::string item;
  while (std::getline(rest, item, ',')) {
    const double v = std::stod(item);
    w.lambdas.push_back(Lambda{v, fmt(v, "%g")});
  }
  if (w.strategy == "finetune") w.lambdas = {Lambda{0.0, "0"}};
  if (w.lambdas.empty()) throw InvalidArgument("[bench] --sweep " + s + " lists no lambda");
  return w;
}

std::unique_ptr<Regularizer> make_strategy(const std::string& strategy, RegularizerOptions o) {
  if (strategy == "finetune") return nullptr;
  if (strategy == "sni-synapse-only") {
    o.synapse_weight = 1.0f;
    o.neuron_out_weight = o.neuron_in_weight = 0.0f;
    return make_regularizer("sni", o);
  }
  if (strategy == "sni-neuron-only") {
    o.synapse_weight = 0.0f;
    o.neuron_out_weight = o.neuron_in_weight = 1.0f;
    return make_regularizer("sni", o);
  }
  return make_regularizer(strategy, o);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Permuted Fashion-MNIST: average accuracy after the last task per regularizer and lambda"};
  std::string train_spec = "fashion-mnist", test_spec = "fashion-mnist:test", model_spec = "mlp:784-400-400-10";
  std::string json_path;
  std::vector<std::string> sweep_args;
  int tasks_count = 5, threads = 0;
  int64_t train_samples = 0;
  uint64_t seed = 1;
  ContinualOptions options;
  options.optimizer.name = "sgd";
  options.optimizer.lr = 0.01f;
  options.optimizer.momentum = 0.9f;
  options.batch_size = 64;
  options.epochs = 2;
  RegularizerOptions reg;
  reg.samples = 1024;
  app.add_option("--train", train_spec, "training data spec");
  app.add_option("--test", test_spec, "test data spec");
  app.add_option("--model", model_spec, "model spec");
  app.add_option("--tasks", tasks_count, "number of permuted tasks (task 0 is the identity)");
  app.add_option("--epochs", options.epochs, "epochs per task");
  app.add_option("--train-samples", train_samples, "training samples per task (seeded subset; 0: all)");
  app.add_option("--batch-size", options.batch_size, "training batch size");
  app.add_option("--lr", options.optimizer.lr, "SGD learning rate");
  app.add_option("--momentum", options.optimizer.momentum, "SGD momentum");
  app.add_option("--importance-samples", reg.samples, "samples each importance estimate reads");
  app.add_option("--seed", seed, "model, permutation and batch seed");
  app.add_option("--threads", threads, "CPU threads (0: all)");
  app.add_option("--sweep", sweep_args, "STRATEGY=L1,L2,... (repeatable)")->required();
  app.add_option("--json", json_path, "write results here");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    std::vector<Sweep> sweeps;
    for (const std::string& s : sweep_args) sweeps.push_back(parse_sweep(s));
    const Dataset train = load_dataset(train_spec), test = load_dataset(test_spec);
    const std::vector<ContinualTask> tasks = make_permuted_tasks(train, test, tasks_count, seed, train_samples);
    options.seed = seed;
    reg.seed = seed;

    nlohmann::json out, sweep_json = nlohmann::json::object(), timing = nlohmann::json::object();
    std::map<std::string, std::pair<Lambda, double>> best;  // strategy -> (λ, accuracy)
    std::map<std::string, std::string> row_sweep;
    std::map<std::string, std::pair<double, double>> row_time;  // strategy -> (estimate s, epoch s)
    for (const Sweep& w : sweeps) {
      for (const Lambda& lambda : w.lambdas) {
        Sequential model = build_model(model_spec, seed);
        std::unique_ptr<Regularizer> r = make_strategy(w.strategy, reg);
        options.lambda = static_cast<float>(lambda.value);
        const auto start = std::chrono::steady_clock::now();
        const ContinualResult res = run_continual_tasks(model, tasks, options, r.get());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cerr << w.strategy << " lambda=" << lambda.text << ": average " << fmt(res.final_average) << " (after each task:";
        for (const auto& acc : res.accuracy) {
          double s = 0;
          for (double a : acc) s += a;
          std::cerr << " " << fmt(s / acc.size(), "%.3f");
        }
        std::cerr << "; per task after the last:";
        for (double a : res.accuracy.back()) std::cerr << " " << fmt(a, "%.3f");
        std::cerr << ") " << fmt(secs, "%.1f") << " s\n";
        sweep_json[w.strategy][lambda.text] = res.final_average;
        row_sweep[w.strategy] += (row_sweep[w.strategy].empty() ? "" : " ") + lambda.text + ":" +
                                 fmt(100 * res.final_average, "%.1f");
        auto it = best.find(w.strategy);
        if (it == best.end() || res.final_average > it->second.second) best[w.strategy] = {lambda, res.final_average};
        row_time[w.strategy] = {res.mean_estimation_seconds(), res.mean_epoch_seconds()};
        timing[w.strategy] = {{"estimation_seconds_per_consolidation", res.mean_estimation_seconds()},
                              {"epoch_seconds", res.mean_epoch_seconds()}};
      }
    }

    std::printf("\nPermuted %s, %d tasks, %s, %d epochs/task, %lld train samples/task, seed %llu\n", train_spec.c_str(),
                tasks_count, model_spec.c_str(), options.epochs, static_cast<long long>(tasks[0].train.size()),
                static_cast<unsigned long long>(seed));
    std::printf("%-18s %10s %9s %12s %10s %8s  %s\n", "strategy", "best λ", "avg acc", "estimate s", "epoch s",
                "ratio", "sweep (λ:avg %)");
    for (const Sweep& w : sweeps) {
      const auto& b = best[w.strategy];
      const auto& t = row_time[w.strategy];
      std::printf("%-18s %10s %9s %12s %10s %8s  %s\n", w.strategy.c_str(), b.first.text.c_str(),
                  fmt(100 * b.second, "%.2f").c_str(), fmt(t.first, "%.3f").c_str(), fmt(t.second, "%.3f").c_str(),
                  t.second > 0 ? fmt(t.first / t.second, "%.3f").c_str() : "-", row_sweep[w.strategy].c_str());
      out[w.strategy] = b.second;
    }
    nlohmann::json best_lambda = nlohmann::json::object();
    for (const auto& b : best) best_lambda[b.first] = b.second.first.value;
    out["best_lambda"] = best_lambda;
    out["sweep"] = sweep_json;
    out["timing"] = timing;
    out["settings"] = {{"train", train_spec},        {"test", test_spec},
                       {"model", model_spec},        {"tasks", tasks_count},
                       {"epochs_per_task", options.epochs},
                       {"train_samples_per_task", tasks[0].train.size()},
                       {"batch_size", options.batch_size},
                       {"optimizer", "sgd"},         {"lr", tidy(options.optimizer.lr)},
                       {"momentum", tidy(options.optimizer.momentum)},
                       {"importance_samples", reg.samples},
                       {"seed", seed},               {"threads", num_threads()},
                       {"online_ewc_gamma", 0.9},    {"si_damping", tidy(reg.si_damping)},
                       {"sni_synapse", reg.synapse}, {"metric", "mean test accuracy over all tasks after the last"}};
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << out.dump(2) << "\n";
      if (!f) throw Error("[bench] cannot write " + json_path);
      std::printf("wrote %s\n", json_path.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
