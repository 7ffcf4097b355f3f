#pragma once
// Sliding-window UCB (Garivier & Moulines 2011): UCB computed on the last `window` rewards
// only, so the policy forgets abruptly what happened before:
//   window mean + sqrt(c * ln(min(t, window)) / N_i),  N_i = pulls of i in the window.
// An arm with no pull in the window is tried first. Deterministic, rewards in [0, 1].
// Options: window (2500), c (0.3), seed.
#include <deque>
#include <utility>

#include "bandits/policy.h"

namespace nnr::bandits {

class SlidingWindowUcbPolicy : public Policy {
 public:
  explicit SlidingWindowUcbPolicy(const PolicyOptions& options = {});
  double index(ArmId arm) const;

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  void on_retire(ArmId arm) override;
  nlohmann::json save_extra() const override;
  void load_extra(const nlohmann::json& extra) override;

 private:
  // The window, oldest first: (arm, reward). ArmStats pulls and sums cover exactly these.
  std::deque<std::pair<ArmId, double>> recent_;
};

}  // namespace nnr::bandits
