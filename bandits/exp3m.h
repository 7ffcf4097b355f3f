#pragma once
// Exp3.M (Uchiya, Kasai & Nakamura 2010): EXP3 for multiple plays, k distinct arms of K per
// round, rewards in [0, 1]. Each round:
//   1. if the largest weight is at least c = (1/k - gamma/K) / (1 - gamma) of the total, cap
//      the largest weights at the alpha with alpha / (sum of capped weights, each alpha, +
//      the rest) = c; the capped arms form S0 (they will be played with probability 1);
//   2. p_i = k ((1 - gamma) w'_i / sum w' + gamma / K), so sum p_i = k and p_i <= 1;
//   3. draw the k arms by dependent rounding (Gandhi et al. 2006): arm i is among them with
//      probability exactly p_i;
//   4. after the round's rewards (update_round), x^_i = x_i / p_i for every rewarded arm, and
//      w_i *= exp(eta x^_i) for the rewarded arms outside S0, eta = k gamma / K.
// x^_i is unbiased for x_i because p_i is the arm's exact marginal probability of being
// played (unlike exp3's min(1, k p_i)). With select() (k = 1) it is EXP3. A newly added arm
// gets the largest current weight. Weights are kept as logs, shifted so the largest is 0.
// Options: gamma (0.1), eta (0: k gamma / K), seed.
//
// multiple_play() is true: ask select_k for the number of arms that will actually be used
// (not a ranking of all arms: with k = K every arm has p_i = 1) and report exactly those in
// one update_round.
#include <map>
#include <vector>

#include "bandits/policy.h"

namespace nnr::bandits {

// Dependent rounding (Gandhi, Khuller, Parthasarathy & Srinivasan 2006, DepRound): from
// probabilities p_i in [0, 1] whose sum is an integer k, k distinct indices (increasing),
// index i included with probability exactly p_i. Uses at most p.size() - 1 uniform draws.
// Throws BanditError ("[bandits] ...") if a p_i is outside [0, 1] or the sum is not within
// 1e-6 of an integer.
std::vector<size_t> dependent_rounding(std::vector<double> p, Rng& rng);

class Exp3MPolicy : public Policy {
 public:
  explicit Exp3MPolicy(const PolicyOptions& options = {});
  bool multiple_play() const override { return true; }

  // Marginal probability of each live arm (arms() order) to be among k: sums to k.
  std::vector<double> probabilities(size_t k) const;
  // Sum over rounds of the importance-weighted reward x / p of a live arm (nothing in rounds
  // it was not rewarded): an unbiased estimate of the sum of its rewards over all rounds.
  double estimated_gain(ArmId arm) const;

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  void observe_round(const std::vector<std::pair<ArmId, double>>& rewards) override;
  bool unit_rewards() const override { return true; }
  ArmStats initial_stats(ArmId arm) const override;
  void on_retire(ArmId arm) override;
  nlohmann::json save_extra() const override;
  void load_extra(const nlohmann::json& extra) override;

 private:
  // Probabilities for k and the capped set S0 (ids).
  std::vector<double> marginals(size_t k, std::vector<ArmId>* capped) const;

  size_t last_k_ = 1;                // k of the last choose (used for rewards without one)
  std::vector<ArmId> capped_;        // S0 of the last choose, increasing
  std::map<ArmId, double> gain_;     // estimated_gain per live arm
};

}  // namespace nnr::bandits
