#pragma once
// Sliding-window UCB (Garivier & Moulines 2011): UCB computed on the rewards of the last
// `window` rounds only (a round is one play: one update, or one update_round for the k arms
// of a select_k), so the policy forgets abruptly what happened before:
//   window mean + sqrt(c * ln(min(t, window)) / N_i),  t = rounds, N_i = pulls of i in the window.
// An arm with no pull in the window is tried first. Deterministic, rewards in [0, 1].
// Options: window (2500), c (0.3), seed.
#include <deque>
#include <utility>

#include "bandits/index_policy.h"

namespace nnr::bandits {

class SlidingWindowUcbPolicy : public IndexPolicy {
 public:
  explicit SlidingWindowUcbPolicy(const PolicyOptions& options = {});
  double index(ArmId arm) const override;

 protected:
  void observe_round(const std::vector<std::pair<ArmId, double>>& rewards) override;
  void on_retire(ArmId arm) override;
  nlohmann::json save_extra() const override;
  void load_extra(const nlohmann::json& extra) override;

 private:
  struct Entry {
    ArmId arm;
    double reward;
    int64_t round;  // steps() of the round that reported it
  };
  // The window, oldest first: rewards of rounds > steps() - window. ArmStats pulls and sums
  // cover exactly these.
  std::deque<Entry> recent_;
};

}  // namespace nnr::bandits
