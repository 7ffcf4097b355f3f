#pragma once
// KL-UCB for Bernoulli rewards (Garivier & Cappe 2011): the arm whose upper confidence bound
//   max { q in [mean, 1] : n * kl(mean, q) <= ln t + c * ln ln t }
// is largest, kl being the Bernoulli divergence. Tighter than UCB1 for rewards in [0, 1]
// (c = 0 is the recommended practical choice). Deterministic; stationary streams.
// Options: c (0), seed.
#include "bandits/policy.h"

namespace nnr::bandits {

class KlUcbPolicy : public Policy {
 public:
  explicit KlUcbPolicy(const PolicyOptions& options = {});
  double index(ArmId arm) const;
  // Bernoulli KL divergence kl(p, q), clamped away from 0 and 1.
  static double bernoulli_kl(double p, double q);

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  bool unit_rewards() const override { return true; }
};

}  // namespace nnr::bandits
