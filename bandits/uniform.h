#pragma once
// Uniform: every live arm equally likely. The baseline every other policy must beat.
#include "bandits/policy.h"

namespace nnr::bandits {

class UniformPolicy : public Policy {
 public:
  explicit UniformPolicy(const PolicyOptions& options = {}) : Policy("uniform", options, {}) {}

 protected:
  std::vector<ArmId> choose(size_t k) override { return draw_k(k, std::vector<double>(arms().size(), 1.0)); }
  void observe(ArmId arm, double reward) override {
    ArmStats& s = stats_[arm];
    s.pulls += 1.0;
    s.reward_sum += reward;
  }
};

}  // namespace nnr::bandits
