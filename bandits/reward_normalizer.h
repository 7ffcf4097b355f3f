#pragma once
// RewardNormalizer: wraps any policy and maps raw rewards of any scale to [0, 1] before the
// wrapped policy sees them: r -> clamp((r - q_low) / (q_high - q_low), 0, 1), where q_low and
// q_high are quantiles of the last `window` raw rewards (the current one included), as in
// automated curriculum learning (Graves et al. 2017, 20th and 80th percentiles).
// Use it when rewards have no fixed range (loss drops, learning progress, gradient norms) and
// the policy needs [0, 1] (ucb1, kl-ucb, thompson, exp3*, *-ucb). It also makes the policy
// insensitive to the reward's units and to slow drift of its scale, at the cost that a
// reward's value depends on the recent history. Before two distinct values have been seen,
// rewards map to 0.5 (equal), 0 or 1 (below/above the single value).
// Factory name: "norm:<inner>", options norm_window (1000), norm_low (0.2), norm_high (0.8)
// plus the inner policy's options.
#include <memory>

#include "bandits/policy.h"

namespace nnr::bandits {

class RewardNormalizer : public Policy {
 public:
  // `options` holds norm_window, norm_low, norm_high and the inner policy's options.
  RewardNormalizer(std::unique_ptr<Policy> inner, const PolicyOptions& options = {});

  const Policy& inner() const { return *inner_; }
  // What `raw` would map to now (without recording it).
  double normalize(double raw) const;

  bool multiple_play() const override { return inner_->multiple_play(); }
  void add_arm(ArmId arm) override;
  void retire_arm(ArmId arm) override;

  static const PolicyOptions& own_defaults();

 protected:
  std::vector<ArmId> choose(size_t k) override { return inner_->select_k(k); }
  void observe(ArmId arm, double reward) override;
  // Records all raw rewards of the round, then passes their normalised values to the wrapped
  // policy as one round.
  void observe_round(const std::vector<std::pair<ArmId, double>>& rewards) override;
  nlohmann::json save_extra() const override;
  void load_extra(const nlohmann::json& extra) override;

 private:
  static double quantile(std::vector<double> values, double q);
  std::unique_ptr<Policy> inner_;
  std::vector<double> recent_;  // ring buffer of raw rewards
  size_t next_ = 0;             // where the next raw reward goes once the buffer is full
};

}  // namespace nnr::bandits
