#pragma once
// EXP3 (Auer et al. 2002) for adversarial rewards in [0, 1]: exponential weights on
// importance-weighted rewards, mixed with gamma of uniform exploration:
//   p_i = (1 - gamma) w_i / sum w + gamma / K,   w_I *= exp(gamma * (r / p_I) / K).
// "exp3s" is EXP3.S: after each update every weight also receives e * alpha / K of the total,
// so no arm's weight can vanish and a new best arm is found again after a shift (the variant
// used for automated curriculum learning, Graves et al. 2017).
// With select_k, an arm's importance weight uses min(1, k p_i), its approximate chance of
// being among the k (use exp3m for exact k-of-K marginals); the rewards of one round
// (update_round) update the weights once, with the probabilities of that round. A newly added arm gets the largest current weight (optimistic).
// Weights are kept as logs, shifted so the largest is 0, so they never overflow.
// eta, when > 0, replaces the learning rate gamma / K (a larger eta concentrates faster on a
// clearly better arm, at the price of the worst-case guarantee).
// Options: exp3: gamma (0.1), alpha (0), eta (0: gamma / K); exp3s: gamma (0.02),
// alpha (1e-5), eta (0.02) (tuned on the two switching test beds, rotation and abrupt change:
// alpha 1e-5 instead of 1e-4 wastes fewer picks on bad arms between changes and still lets a
// new best arm take over within ~1000 steps; see bandits/README.md); seed.
#include "bandits/policy.h"

namespace nnr::bandits {

class Exp3Policy : public Policy {
 public:
  // shifting = true: EXP3.S ("exp3s").
  Exp3Policy(bool shifting, const PolicyOptions& options = {});
  // Current selection probability of each live arm (in arms() order), for one pick.
  std::vector<double> probabilities() const;

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  void observe_round(const std::vector<std::pair<ArmId, double>>& rewards) override;
  bool unit_rewards() const override { return true; }
  ArmStats initial_stats(ArmId arm) const override;
};

}  // namespace nnr::bandits
