#pragma once
// Thompson sampling: draw a plausible mean per arm from its posterior, take the largest.
//   "thompson"          Beta(prior_alpha + sum r, prior_beta + sum (1 - r)) for rewards in
//                       [0, 1] (fractional rewards update the Beta fractionally).
//   "thompson-gaussian" Normal(mean, var / n) for rewards of any scale; var is the arm's
//                       sample variance (prior_variance until it has two rewards).
// An arm with no reward yet is tried first. Options: beta: prior_alpha (1), prior_beta (1);
// gaussian: prior_variance (1); both: seed.
#include "bandits/policy.h"

namespace nnr::bandits {

class ThompsonPolicy : public Policy {
 public:
  enum class Model { Beta, Gaussian };
  explicit ThompsonPolicy(Model model, const PolicyOptions& options = {});

 protected:
  std::vector<ArmId> choose(size_t k) override;
  void observe(ArmId arm, double reward) override;
  bool unit_rewards() const override { return model_ == Model::Beta; }

 private:
  double draw_mean(const ArmStats& s);
  Model model_;
};

}  // namespace nnr::bandits
