#include "bandits/ucb1.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

Ucb1Policy::Ucb1Policy(const PolicyOptions& options) : Policy("ucb1", options, {{"c", 2.0}}) {
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double Ucb1Policy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  const double log_t = std::log(std::max(1.0, static_cast<double>(steps())));
  return s.mean() + std::sqrt(option("c") * log_t / s.pulls);
}

std::vector<ArmId> Ucb1Policy::choose(size_t k) {
  std::vector<double> scores;
  for (ArmId id : arms()) scores.push_back(index(id));
  return top_k(k, scores);
}

void Ucb1Policy::observe(ArmId arm, double reward) {
  require_unit_reward(reward);
  ArmStats& s = stats_[arm];
  s.pulls += 1.0;
  s.reward_sum += reward;
}

}  // namespace nnr::bandits
