// bandit_regret: runs bandit policies on a test bed (bandits/regret_testbed.h, the same code
// the tests assert on) and prints each policy's mean cumulative regret +- its standard error
// over seeds, at T/2 and at T. For the switching bed it also prints how often the best arm
// was chosen from `--after-switch` steps after each switch to the next one. At each switch
// the means rotate by `--shift`, or, with `--means-after` (one per switch, in order), take
// the given values.
//
//   bandit_regret --scenario stationary --arms 10 --horizon 10000 --seeds 20
//     --policies uniform,ucb1,kl-ucb,thompson   (one command line)
//   bandit_regret --scenario switching --switch-at 5000 --policies ucb1,discounted-ucb
//     --param discounted-ucb:gamma=0.995        (one command line)
//   bandit_regret --scenario switching --means 0.1,0.3,0.5,0.7,0.9 --switch-at 5000
//     --means-after 0.75,0.3,0.5,0.55,0.6 --policies ucb1,discounted-ucb,exp3s   (one line)
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bandits/factory.h"
#include "bandits/regret_testbed.h"

using namespace nnr::bandits;

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(sep, start), text.size());
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// "0.95,0.3,0.5" -> {0.95, 0.3, 0.5}; throws BanditError on anything that is not a number.
std::vector<double> parse_means(const std::string& text) {
  std::vector<double> out;
  for (const auto& item : split(text, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (end == item.c_str() || *end != '\0') throw BanditError("[bandit_regret] --means-after: '" + item + "' is not a number");
    out.push_back(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Mean cumulative regret of bandit policies on a test bed"};
  std::string scenario_name = "stationary";
  int64_t arms = 10;
  std::vector<double> means;
  double low = 0.1, high = 0.9;
  std::vector<int64_t> switch_at;
  std::vector<std::string> means_after_text;
  int64_t shift = 1;
  int64_t horizon = 10000;
  int seeds = 20;
  int64_t after_switch = 1000;
  std::string policies_text = "uniform,ucb1,kl-ucb,thompson";
  std::vector<std::string> params;
  bool json = false;
  app.add_option("--scenario", scenario_name, "stationary | switching | adversarial")
      ->check(CLI::IsMember({"stationary", "switching", "adversarial"}));
  app.add_option("--arms", arms, "number of arms K (means evenly spaced in [--low, --high])")->check(CLI::Range(2, 1000000));
  app.add_option("--means", means, "explicit arm means, e.g. 0.1,0.5,0.9 (overrides --arms)")->delimiter(',');
  app.add_option("--low", low, "lowest evenly spaced mean")->check(CLI::Range(0.0, 1.0));
  app.add_option("--high", high, "highest evenly spaced mean")->check(CLI::Range(0.0, 1.0));
  app.add_option("--switch-at", switch_at, "switching: steps where the means change, e.g. 5000")->delimiter(',');
  app.add_option("--shift", shift, "switching: positions the means rotate by at each switch");
  app.add_option("--means-after", means_after_text,
                 "switching: the arm means after a switch, e.g. 0.95,0.3,0.5,0.7,0.8 (repeat once per "
                 "--switch-at, in order; replaces the rotation)");
  app.add_option("--horizon", horizon, "steps T per run")->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  app.add_option("--seeds", seeds, "runs per policy (seeds 1..S)")->check(CLI::Range(1, 100000));
  app.add_option("--after-switch", after_switch, "switching: best-arm rate counted from this many steps after each switch");
  app.add_option("--policies", policies_text, "comma-separated policy names (see bandits/README.md)");
  app.add_option("--param", params, "a policy's options, NAME:key=value,... (repeatable), e.g. ucb1:c=1");
  app.add_flag("--json", json, "print one JSON object instead of a table");
  CLI11_PARSE(app, argc, argv);

  try {
    Scenario scenario;
    scenario.kind = parse_scenario_kind(scenario_name);
    scenario.means = means.empty() ? evenly_spaced_means(arms, low, high) : means;
    scenario.switch_at = switch_at;
    scenario.shift = shift;
    for (const auto& text : means_after_text) scenario.means_after.push_back(parse_means(text));
    scenario.horizon = horizon;
    scenario.validate();
    const auto policies = split(policies_text, ',');
    std::map<std::string, PolicyOptions> options;
    for (const auto& p : params) {
      const size_t colon = p.find(':');
      if (colon == std::string::npos) throw BanditError("[bandit_regret] --param '" + p + "' is not NAME:key=value,...");
      for (const auto& kv : parse_policy_options(p.substr(colon + 1))) options[p.substr(0, colon)][kv.first] = kv.second;
    }
    for (const auto& kv : options)
      if (std::find(policies.begin(), policies.end(), kv.first) == policies.end())
        throw BanditError("[bandit_regret] --param names policy '" + kv.first + "', which is not in --policies");

    for (const auto& name : policies) make_policy(name, options[name]);  // bad names fail before any output
    nlohmann::json report = {{"scenario", scenario_name}, {"means", scenario.means}, {"switch_at", switch_at},
                             {"shift", shift},           {"horizon", horizon},      {"seeds", seeds},
                             {"means_after", scenario.means_after}};
    if (scenario.kind == ScenarioKind::Stationary) report["ucb1_bound"] = ucb1_regret_bound(scenario.means, horizon);
    if (scenario.kind == ScenarioKind::Adversarial) {
      report["exp3_bound"] = exp3_regret_bound(scenario.arms(), horizon);
      report["exp3_tuned_gamma"] = exp3_tuned_gamma(scenario.arms(), horizon);
    }
    if (!json) {
      std::printf("scenario %s, K=%lld, horizon %lld, %d seeds, means", scenario_name.c_str(),
                  static_cast<long long>(scenario.arms()), static_cast<long long>(horizon), seeds);
      for (double m : scenario.means) std::printf(" %.4g", m);
      std::printf("\n");
      if (!switch_at.empty() && scenario.means_after.empty()) {
        std::printf("means rotate by %lld at", static_cast<long long>(shift));
        for (auto s : switch_at) std::printf(" %lld", static_cast<long long>(s));
        std::printf("; best-arm rate counted from %lld steps after each switch\n", static_cast<long long>(after_switch));
      }
      for (size_t i = 0; i < scenario.means_after.size(); ++i) {
        std::printf("means from step %lld:", static_cast<long long>(switch_at[i]));
        for (double m : scenario.means_after[i]) std::printf(" %.4g", m);
        std::printf("\n");
      }
      if (!scenario.means_after.empty())
        std::printf("best-arm rate counted from %lld steps after each switch\n", static_cast<long long>(after_switch));
      if (report.contains("ucb1_bound")) std::printf("UCB1 regret bound (Auer et al. 2002): %.1f\n", report["ucb1_bound"].get<double>());
      if (report.contains("exp3_bound"))
        std::printf("EXP3 regret bound: %.1f with gamma = %.6g\n", report["exp3_bound"].get<double>(),
                    report["exp3_tuned_gamma"].get<double>());
      std::printf("%-22s %20s %20s %14s  %s\n", "policy", "regret@T/2", "regret@T", "best-arm rate", "options");
    }
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& name : policies) {
      std::vector<RegretRun> runs;
      for (int s = 1; s <= seeds; ++s) runs.push_back(run_policy(scenario, name, options[name], static_cast<uint64_t>(s)));
      const auto half = regret_after(runs, horizon / 2);
      const auto full = regret_after(runs, horizon);
      double rate = -1.0;
      if (scenario.kind == ScenarioKind::Switching && !switch_at.empty()) {
        int64_t hits = 0, total = 0;  // weighted over all post-switch windows
        for (size_t i = 0; i < switch_at.size(); ++i) {
          const int64_t from = switch_at[i] + after_switch;
          const int64_t to = i + 1 < switch_at.size() ? switch_at[i + 1] : horizon;
          if (from >= to) continue;
          const double r = best_arm_rate(runs, scenario, from, to);
          hits += static_cast<int64_t>(r * static_cast<double>((to - from) * seeds) + 0.5);
          total += (to - from) * seeds;
        }
        if (total) rate = static_cast<double>(hits) / static_cast<double>(total);
      }
      const auto built = make_policy(name, options[name]);
      nlohmann::json row = {{"policy", name},          {"options", built->options()},
                            {"regret_half", half.mean}, {"regret_half_se", half.std_error},
                            {"regret", full.mean},      {"regret_se", full.std_error}};
      if (rate >= 0.0) row["best_arm_rate_after_switch"] = rate;
      rows.push_back(row);
      if (!json) {
        std::string opts;
        for (const auto& kv : built->options())
          if (kv.first != "seed") opts += (opts.empty() ? "" : ",") + kv.first + "=" + nlohmann::json(kv.second).dump();
        char half_text[64], full_text[64], rate_text[32] = "-";
        std::snprintf(half_text, sizeof half_text, "%.1f +- %.1f", half.mean, half.std_error);
        std::snprintf(full_text, sizeof full_text, "%.1f +- %.1f", full.mean, full.std_error);
        if (rate >= 0.0) std::snprintf(rate_text, sizeof rate_text, "%.3f", rate);
        std::printf("%-22s %20s %20s %14s  %s\n", name.c_str(), half_text, full_text, rate_text, opts.c_str());
      }
    }
    if (json) {
      report["results"] = rows;
      std::printf("%s\n", report.dump(2).c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
