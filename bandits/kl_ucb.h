#pragma once
// KL-UCB for Bernoulli rewards (Garivier & Cappe 2011): the arm whose upper confidence bound
//   max { q in [mean, 1] : n * kl(mean, q) <= ln t + c * ln ln t }
// is largest, kl being the Bernoulli divergence. Tighter than UCB1 for rewards in [0, 1]
// (c = 0 is the recommended practical choice). Deterministic; stationary streams.
// Options: c (0), seed.
#include "bandits/index_policy.h"

namespace nnr::bandits {

class KlUcbPolicy : public IndexPolicy {
 public:
  explicit KlUcbPolicy(const PolicyOptions& options = {});
  double index(ArmId arm) const override;
  // Bernoulli KL divergence kl(p, q), clamped away from 0 and 1.
  static double bernoulli_kl(double p, double q);
};

}  // namespace nnr::bandits
