#include "bandits/index_policy.h"

namespace nnr::bandits {

std::vector<ArmId> IndexPolicy::choose(size_t k) {
  std::vector<double> scores;
  for (ArmId id : arms()) scores.push_back(index(id));
  return top_k(k, scores);
}

void IndexPolicy::observe(ArmId arm, double reward) {
  ArmStats& s = stats_[arm];
  s.pulls += 1.0;
  s.reward_sum += reward;
}

}  // namespace nnr::bandits
