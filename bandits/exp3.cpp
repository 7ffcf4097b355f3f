#include "bandits/exp3.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace nnr::bandits {

// ArmStats use: weight = log-weight (max over live arms is 0), aux = the probability the
// arm had when it was last chosen (0: not chosen since its last reward).

Exp3Policy::Exp3Policy(bool shifting, const PolicyOptions& options)
    : Policy(shifting ? "exp3s" : "exp3", options, shifting ? PolicyOptions{{"gamma", 0.02}, {"alpha", 1e-5}, {"eta", 0.02}}
                               : PolicyOptions{{"gamma", 0.1}, {"alpha", 0.0}, {"eta", 0.0}}) {
  if (!(option("gamma") > 0.0 && option("gamma") <= 1.0)) fail("option 'gamma' must be in (0, 1]");
  if (option("alpha") < 0.0) fail("option 'alpha' must be >= 0");
  if (option("eta") < 0.0) fail("option 'eta' must be >= 0 (0: gamma / K)");
}

ArmStats Exp3Policy::initial_stats(ArmId) const {
  ArmStats s;
  s.weight = 0.0;  // log-weights are shifted so the largest is 0: this is the largest
  return s;
}

std::vector<double> Exp3Policy::probabilities() const {
  const auto& live = arms();
  const double gamma = option("gamma");
  const double k = static_cast<double>(live.size());
  double top = -INFINITY;
  for (ArmId id : live) top = std::max(top, stats_.at(id).weight);
  std::vector<double> p;
  double total = 0.0;
  for (ArmId id : live) {
    p.push_back(std::exp(stats_.at(id).weight - top));
    total += p.back();
  }
  for (double& v : p) v = (1.0 - gamma) * v / total + gamma / k;
  return p;
}

std::vector<ArmId> Exp3Policy::choose(size_t k) {
  const std::vector<double> p = probabilities();
  const auto& live = arms();
  for (size_t i = 0; i < live.size(); ++i)
    stats_[live[i]].aux = std::min(1.0, static_cast<double>(k) * p[i]);
  return draw_k(k, p);
}

void Exp3Policy::observe(ArmId arm, double reward) { observe_round({{arm, reward}}); }

void Exp3Policy::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  for (const auto& kv : rewards) require_unit_reward(kv.second);
  const auto& live = arms();
  const double gamma = option("gamma");
  const double k = static_cast<double>(live.size());
  // Learning rate gamma / K (Auer et al.) unless eta is set; the gain is then at most 1.
  const double eta = option("eta") > 0.0 ? option("eta") : gamma / k;
  // Every gain of the round uses the probabilities the round was played with.
  std::vector<double> current;
  std::map<ArmId, double> gains;
  for (const auto& [arm, reward] : rewards) {
    ArmStats& chosen = stats_[arm];
    double prob = chosen.aux;
    if (prob <= 0.0) {  // rewarded without being chosen by select: use its current probability
      if (current.empty()) current = probabilities();
      prob = current[static_cast<size_t>(std::lower_bound(live.begin(), live.end(), arm) - live.begin())];
    }
    gains[arm] = eta * reward / prob;
  }
  for (const auto& [arm, reward] : rewards) {
    ArmStats& chosen = stats_[arm];
    chosen.aux = 0.0;
    chosen.pulls += 1.0;
    chosen.reward_sum += reward;
  }
  const double alpha = option("alpha");
  if (alpha > 0.0) {
    // Once per round: w_i <- w_i exp(gain_i) + (e alpha / K) sum_j w_j, in logs relative
    // to the old top.
    double top = -INFINITY;
    for (ArmId id : live) top = std::max(top, stats_.at(id).weight);
    double total = 0.0;
    for (ArmId id : live) total += std::exp(stats_.at(id).weight - top);
    const double share = std::exp(1.0) * alpha / k * total;
    for (ArmId id : live) {
      ArmStats& s = stats_[id];
      const auto g = gains.find(id);
      s.weight = std::log(std::exp(s.weight - top + (g == gains.end() ? 0.0 : g->second)) + share);
    }
  } else {
    for (const auto& [arm, gain] : gains) stats_[arm].weight += gain;
  }
  double top = -INFINITY;
  for (ArmId id : live) top = std::max(top, stats_.at(id).weight);
  for (ArmId id : live) stats_[id].weight -= top;
}

}  // namespace nnr::bandits
