#pragma once
// IndexPolicy: the base of the UCB family (ucb1, kl-ucb, discounted-ucb, sliding-window-ucb).
// Each play takes the k live arms with the largest index (+infinity before an arm's first reward,
// ties to the lower id, so the choice is deterministic); rewards must be in [0, 1]. A subclass
// gives index(); one with a clock of its own (discounting, a window) overrides observe_round.
#include <vector>

#include "bandits/policy.h"

namespace nnr::bandits {

class IndexPolicy : public Policy {
 public:
  // The index of a live arm.
  virtual double index(ArmId arm) const = 0;

 protected:
  using Policy::Policy;
  std::vector<ArmId> choose(size_t k) override;
  // One pull counted and its reward summed.
  void observe(ArmId arm, double reward) override;
  bool unit_rewards() const override { return true; }
};

}  // namespace nnr::bandits
