#pragma once
// UCB1 (Auer, Cesa-Bianchi & Fischer 2002): the arm with the largest
// mean + sqrt(c * ln t / n). c = 2 is the analysed constant. Deterministic (ties go to the
// lower id), assumes a stationary stream and rewards in [0, 1]. Options: c (2), seed.
#include "bandits/policy.h"

namespace nnr::bandits {

class Ucb1Policy : public Policy {
 public:
  explicit Ucb1Policy(const PolicyOptions& options = {});
  // The index of a live arm (+infinity before its first reward).
  double index(ArmId arm) const;

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  bool unit_rewards() const override { return true; }
};

}  // namespace nnr::bandits
