#pragma once
// SampleSelector: which stored samples to train on next. Each arm is a group of sample
// indices (a data chunk, a class, a cluster of the replay memory); select() lets the policy
// pick a group and draws a minibatch of distinct indices from it with the selector's own
// seeded generator; update() reports the reward the step earned (its learning progress,
// e.g. the drop of a probe loss; wrap the policy with "norm:" when that has no fixed scale).
// Groups come and go at run time, keeping their ids.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "bandits/policy.h"

namespace nnr::bandits {

class SampleSelector {
 public:
  struct Minibatch {
    ArmId group = -1;
    std::vector<int64_t> indices;  // distinct sample indices of that group
  };

  // Takes the policy; its live arms, if any, must be added as groups before select().
  explicit SampleSelector(std::unique_ptr<Policy> policy, uint64_t seed = 0);

  // A new group (id not live, at least one index). It becomes an arm with an optimistic start.
  void add_group(ArmId group, std::vector<int64_t> indices);
  // Drops a group; it is never chosen again. A pending selection of it is forgotten.
  void remove_group(ArmId group);
  const std::vector<int64_t>& group(ArmId group) const;
  size_t group_count() const { return groups_.size(); }

  // A group chosen by the policy and min(batch_size, group size) distinct indices from it,
  // in random order. batch_size >= 1.
  Minibatch select(size_t batch_size);
  // The reward for the last select(); exactly one update per select.
  void update(double reward);

  const Policy& policy() const { return *policy_; }

  // Groups, the pending choice, the sampler's generator and the policy's state.
  nlohmann::json save_state() const;
  // Restores a save_state(); the policy must have been built with the saved options.
  void load_state(const nlohmann::json& state);

 private:
  std::unique_ptr<Policy> policy_;
  BanditRng rng_;
  std::map<ArmId, std::vector<int64_t>> groups_;
  std::optional<ArmId> pending_;
};

}  // namespace nnr::bandits
