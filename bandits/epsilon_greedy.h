#pragma once
// Epsilon-greedy: the arm with the best mean reward, except with probability eps_t a
// uniformly random one. eps_t = epsilon / (1 + decay * t) (decay = 0: constant exploration,
// which also tracks slow drift; decay > 0: exploration fades for stationary streams).
// Rewards may have any scale. Options: epsilon (0.1), decay (0), seed.
#include "bandits/policy.h"

namespace nnr::bandits {

class EpsilonGreedyPolicy : public Policy {
 public:
  explicit EpsilonGreedyPolicy(const PolicyOptions& options = {});
  double current_epsilon() const;

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
};

}  // namespace nnr::bandits
