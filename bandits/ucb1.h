#pragma once
// UCB1 (Auer, Cesa-Bianchi & Fischer 2002): the arm with the largest
// mean + sqrt(c * ln t / n). c = 2 is the analysed constant. Deterministic (ties go to the
// lower id), assumes a stationary stream and rewards in [0, 1]. Options: c (2), seed.
#include "bandits/index_policy.h"

namespace nnr::bandits {

class Ucb1Policy : public IndexPolicy {
 public:
  explicit Ucb1Policy(const PolicyOptions& options = {});
  double index(ArmId arm) const override;
};

}  // namespace nnr::bandits
