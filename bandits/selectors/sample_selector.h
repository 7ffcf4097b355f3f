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
    // Distinct sample indices: the chosen group's first (`from_group` of them), then, with
    // mixed batches, the top-up from the other groups.
    std::vector<int64_t> indices;
    size_t from_group = 0;
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
  // in random order. batch_size >= 1. With mixed batches, a group smaller than batch_size is
  // topped up with distinct samples drawn uniformly from the other groups (every sample of
  // theirs equally likely), so the batch has exactly batch_size indices whenever the groups
  // hold that many distinct samples in total (fewer only if they do not). The reward still
  // goes to the chosen group.
  Minibatch select(size_t batch_size);
  // Mixed batches on or off (default off); saved with the state.
  void set_mixed_batches(bool on) { mixed_batches_ = on; }
  bool mixed_batches() const { return mixed_batches_; }
  // The reward for the last select(); exactly one update per select.
  void update(double reward);

  const Policy& policy() const { return *policy_; }

  // Groups, the pending choice, the sampler's generator and the policy's state.
  nlohmann::json save_state() const;
  // Restores a save_state(); the policy must have been built with the saved options.
  void load_state(const nlohmann::json& state);

 private:
  std::unique_ptr<Policy> policy_;
  Rng rng_;
  std::map<ArmId, std::vector<int64_t>> groups_;
  std::optional<ArmId> pending_;
  bool mixed_batches_ = false;
};

}  // namespace nnr::bandits
