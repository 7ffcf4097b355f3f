#include "bandits/epsilon_greedy.h"

#include <algorithm>
#include <limits>

namespace nnr::bandits {

EpsilonGreedyPolicy::EpsilonGreedyPolicy(const PolicyOptions& options)
    : Policy("epsilon-greedy", options, {{"epsilon", 0.1}, {"decay", 0.0}}) {
  if (option("epsilon") < 0.0 || option("epsilon") > 1.0) fail("option 'epsilon' must be in [0, 1]");
  if (option("decay") < 0.0) fail("option 'decay' must be >= 0");
}

double EpsilonGreedyPolicy::current_epsilon() const {
  return option("epsilon") / (1.0 + option("decay") * static_cast<double>(steps()));
}

std::vector<ArmId> EpsilonGreedyPolicy::choose(size_t k) {
  const auto& live = arms();
  std::vector<double> scores;
  scores.reserve(live.size());
  for (ArmId id : live) {
    const ArmStats& s = stats_.at(id);
    scores.push_back(s.pulls > 0.0 ? s.mean() : std::numeric_limits<double>::infinity());
  }
  const std::vector<ArmId> ranked = top_k(live.size(), scores);
  const double eps = current_epsilon();
  std::vector<ArmId> out;
  std::vector<ArmId> remaining = ranked;  // best first
  for (size_t n = 0; n < k; ++n) {
    size_t pick = 0;  // greedy: the best arm not taken yet
    if (rng_.uniform() < eps) pick = static_cast<size_t>(rng_.below(remaining.size()));
    out.push_back(remaining[pick]);
    remaining.erase(remaining.begin() + static_cast<std::ptrdiff_t>(pick));
  }
  return out;
}

void EpsilonGreedyPolicy::observe(ArmId arm, double reward) {
  ArmStats& s = stats_[arm];
  s.pulls += 1.0;
  s.reward_sum += reward;
}

}  // namespace nnr::bandits
