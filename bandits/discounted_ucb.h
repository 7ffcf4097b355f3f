#pragma once
// Discounted UCB (Garivier & Moulines 2011) for streams whose best arm changes: every
// round (one play: update, or update_round for the k arms of a select_k) first multiplies
// every arm's count and sum by gamma once, opened or not, then adds the round's rewards, so
// old evidence fades with a half-life of ln 2 / (1 - gamma) rounds; the index is
//   discounted mean + sqrt(c * ln(n_t) / N_i),   n_t = sum of discounted counts.
// An arm not pulled for a while regains a large bonus and is tried again. Deterministic,
// rewards in [0, 1]. Options: gamma (0.9995, half-life ~1400 steps), c (0.3), seed.
#include "bandits/index_policy.h"

namespace nnr::bandits {

class DiscountedUcbPolicy : public IndexPolicy {
 public:
  explicit DiscountedUcbPolicy(const PolicyOptions& options = {});
  double index(ArmId arm) const override;

 protected:
  void observe_round(const std::vector<std::pair<ArmId, double>>& rewards) override;
};

}  // namespace nnr::bandits
