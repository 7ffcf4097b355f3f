#include "bandits/regret_testbed.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "bandits/factory.h"
#include "bandits/ucb1.h"

namespace nnr::bandits {

namespace {

constexpr uint64_t kRewardStream = 0x5eedbeefcafe1234ULL;  // keeps reward draws apart from the policy's

// The adversarial table, row-major [t][arm]: 0 for the arm UCB1 picks at t, 1 for the others.
std::vector<uint8_t> fool_ucb1_table(int64_t arms, int64_t horizon) {
  Ucb1Policy fooled;
  for (int64_t a = 0; a < arms; ++a) fooled.add_arm(a);
  std::vector<uint8_t> table(static_cast<size_t>(arms * horizon), 1);
  for (int64_t t = 0; t < horizon; ++t) {
    const ArmId pick = fooled.select();
    table[static_cast<size_t>(t * arms + pick)] = 0;
    fooled.update(pick, 0.0);
  }
  return table;
}

}  // namespace

ScenarioKind parse_scenario_kind(const std::string& name) {
  if (name == "stationary") return ScenarioKind::Stationary;
  if (name == "switching") return ScenarioKind::Switching;
  if (name == "adversarial") return ScenarioKind::Adversarial;
  throw BanditError("[bandits] unknown scenario '" + name + "'; valid: stationary, switching, adversarial");
}

const char* scenario_kind_name(ScenarioKind kind) {
  switch (kind) {
    case ScenarioKind::Stationary: return "stationary";
    case ScenarioKind::Switching: return "switching";
    case ScenarioKind::Adversarial: return "adversarial";
  }
  return "?";
}

void Scenario::validate() const {
  if (means.size() < 2) throw BanditError("[bandits] a scenario needs at least 2 arms");
  for (double m : means)
    if (!(m >= 0.0 && m <= 1.0)) throw BanditError("[bandits] arm means must be in [0, 1]");
  if (horizon < 1) throw BanditError("[bandits] horizon must be >= 1");
  for (size_t i = 0; i < switch_at.size(); ++i)
    if (switch_at[i] <= 0 || switch_at[i] >= horizon || (i > 0 && switch_at[i] <= switch_at[i - 1]))
      throw BanditError("[bandits] switch times must be strictly increasing and inside (0, horizon)");
  if (kind != ScenarioKind::Switching && !switch_at.empty())
    throw BanditError("[bandits] switch times are only meaningful for the switching scenario");
  if (kind != ScenarioKind::Switching && !means_after.empty())
    throw BanditError("[bandits] means after a switch are only meaningful for the switching scenario");
  if (!means_after.empty()) {
    if (means_after.size() != switch_at.size())
      throw BanditError("[bandits] means_after needs one mean vector per switch time (" +
                        std::to_string(means_after.size()) + " given for " + std::to_string(switch_at.size()) +
                        " switches)");
    for (const auto& segment : means_after) {
      if (segment.size() != means.size())
        throw BanditError("[bandits] every means_after vector needs one mean per arm (" +
                          std::to_string(means.size()) + ")");
      for (double m : segment)
        if (!(m >= 0.0 && m <= 1.0)) throw BanditError("[bandits] arm means must be in [0, 1]");
    }
  }
}

std::vector<double> Scenario::means_at(int64_t t) const {
  if (kind != ScenarioKind::Switching) return means;
  const int64_t phase = std::upper_bound(switch_at.begin(), switch_at.end(), t) - switch_at.begin();
  if (!means_after.empty()) return phase == 0 ? means : means_after.at(static_cast<size_t>(phase - 1));
  const int64_t k = arms();
  const int64_t offset = ((phase * shift) % k + k) % k;
  std::vector<double> out(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) out[static_cast<size_t>(i)] = means[static_cast<size_t>((i + offset) % k)];
  return out;
}

std::vector<double> evenly_spaced_means(int64_t k, double low, double high) {
  std::vector<double> means;
  for (int64_t i = 0; i < k; ++i)
    means.push_back(k == 1 ? high : low + (high - low) * static_cast<double>(i) / static_cast<double>(k - 1));
  return means;
}

RegretRun run_policy(const Scenario& scenario, const std::string& policy_name, PolicyOptions options,
                     uint64_t seed) {
  scenario.validate();
  options["seed"] = static_cast<double>(seed);
  auto policy = make_policy(policy_name, options);
  const int64_t k = scenario.arms();
  for (int64_t a = 0; a < k; ++a) policy->add_arm(a);
  Rng rewards(seed ^ kRewardStream);
  RegretRun run;
  run.cumulative_regret.reserve(static_cast<size_t>(scenario.horizon));
  run.choices.reserve(static_cast<size_t>(scenario.horizon));

  if (scenario.kind == ScenarioKind::Adversarial) {
    const auto table = fool_ucb1_table(k, scenario.horizon);
    std::vector<double> arm_totals(static_cast<size_t>(k), 0.0);
    double earned = 0.0;
    for (int64_t t = 0; t < scenario.horizon; ++t) {
      const ArmId pick = policy->select();
      const uint8_t* row = &table[static_cast<size_t>(t * k)];
      const double reward = row[pick];
      policy->update(pick, reward);
      earned += reward;
      for (int64_t a = 0; a < k; ++a) arm_totals[static_cast<size_t>(a)] += row[a];
      run.choices.push_back(pick);
      run.cumulative_regret.push_back(*std::max_element(arm_totals.begin(), arm_totals.end()) - earned);
    }
    return run;
  }

  double regret = 0.0;
  std::vector<double> means = scenario.means_at(0);
  double best = *std::max_element(means.begin(), means.end());
  size_t next_switch = 0;
  for (int64_t t = 0; t < scenario.horizon; ++t) {
    if (next_switch < scenario.switch_at.size() && t == scenario.switch_at[next_switch]) {
      ++next_switch;
      means = scenario.means_at(t);
      best = *std::max_element(means.begin(), means.end());
    }
    const ArmId pick = policy->select();
    const double mean = means[static_cast<size_t>(pick)];
    policy->update(pick, rewards.uniform() < mean ? 1.0 : 0.0);
    regret += best - mean;
    run.choices.push_back(pick);
    run.cumulative_regret.push_back(regret);
  }
  return run;
}

MeanWithError regret_after(const std::vector<RegretRun>& runs, int64_t steps) {
  MeanWithError out;
  if (runs.empty()) return out;
  const double n = static_cast<double>(runs.size());
  double sum = 0.0, sum_sq = 0.0;
  for (const auto& r : runs) {
    const double v = steps <= 0 ? 0.0 : r.cumulative_regret.at(static_cast<size_t>(steps - 1));
    sum += v;
    sum_sq += v * v;
  }
  out.mean = sum / n;
  if (runs.size() > 1) {
    const double variance = std::max(0.0, (sum_sq - n * out.mean * out.mean) / (n - 1.0));
    out.std_error = std::sqrt(variance / n);
  }
  return out;
}

double best_arm_rate(const std::vector<RegretRun>& runs, const Scenario& scenario, int64_t from, int64_t to) {
  int64_t hits = 0, total = 0;
  for (int64_t t = from; t < to; ++t) {
    const auto means = scenario.means_at(t);
    const double best = *std::max_element(means.begin(), means.end());
    for (const auto& r : runs) {
      hits += means[static_cast<size_t>(r.choices.at(static_cast<size_t>(t)))] == best;
      ++total;
    }
  }
  return total ? static_cast<double>(hits) / static_cast<double>(total) : 0.0;
}

double ucb1_regret_bound(const std::vector<double>& means, int64_t horizon) {
  const double best = *std::max_element(means.begin(), means.end());
  const double pi = 3.14159265358979323846;
  double bound = 0.0;
  for (double m : means) {
    const double gap = best - m;
    if (gap > 0.0) bound += 8.0 * std::log(static_cast<double>(horizon)) / gap + (1.0 + pi * pi / 3.0) * gap;
  }
  return bound;
}

double exp3_tuned_gamma(int64_t arms, int64_t horizon) {
  const double k = static_cast<double>(arms);
  return std::min(1.0, std::sqrt(k * std::log(k) / ((std::exp(1.0) - 1.0) * static_cast<double>(horizon))));
}

double exp3_regret_bound(int64_t arms, int64_t horizon) {
  const double k = static_cast<double>(arms);
  return 2.0 * std::sqrt(std::exp(1.0) - 1.0) * std::sqrt(static_cast<double>(horizon) * k * std::log(k));
}

}  // namespace nnr::bandits
