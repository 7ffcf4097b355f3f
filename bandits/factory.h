#pragma once
// make_policy: a policy by its name, the one place names map to classes.
//   uniform, epsilon-greedy, ucb1, kl-ucb, thompson, thompson-gaussian, exp3, exp3s, exp3m,
//   discounted-ucb, sliding-window-ucb; "norm:<name>" wraps any of them in the
//   RewardNormalizer. An unknown name or option throws BanditError listing the valid ones.
#include <memory>
#include <string>
#include <vector>

#include "bandits/policy.h"

namespace nnr::bandits {

std::unique_ptr<Policy> make_policy(const std::string& name, const PolicyOptions& options = {});
// The policy a save_state() came from, with its saved options, arms and statistics.
std::unique_ptr<Policy> restore_policy(const nlohmann::json& state);
// Valid names for make_policy (without the "norm:" prefix).
std::vector<std::string> policy_names();
// "c=2,seed=7" -> {{"c", 2}, {"seed", 7}}; throws BanditError on a malformed entry.
PolicyOptions parse_policy_options(const std::string& text);

}  // namespace nnr::bandits
