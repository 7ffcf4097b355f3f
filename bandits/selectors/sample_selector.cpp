#include "bandits/selectors/sample_selector.h"

#include <unordered_map>

namespace nnr::bandits {

namespace {
[[noreturn]] void fail(const std::string& message) { throw BanditError("[sample selector] " + message); }
}  // namespace

SampleSelector::SampleSelector(std::unique_ptr<Policy> policy, uint64_t seed)
    : policy_(std::move(policy)), rng_(seed) {
  if (!policy_) fail("needs a policy");
}

void SampleSelector::add_group(ArmId group, std::vector<int64_t> indices) {
  if (indices.empty()) fail("group " + std::to_string(group) + " has no samples");
  if (groups_.count(group)) fail("group " + std::to_string(group) + " already exists");
  if (!policy_->has_arm(group)) policy_->add_arm(group);
  groups_[group] = std::move(indices);
}

void SampleSelector::remove_group(ArmId group) {
  if (!groups_.count(group)) fail("cannot remove group " + std::to_string(group) + ": it does not exist");
  groups_.erase(group);
  policy_->retire_arm(group);
  if (pending_ == group) pending_.reset();
}

const std::vector<int64_t>& SampleSelector::group(ArmId group) const {
  const auto it = groups_.find(group);
  if (it == groups_.end()) fail("no group " + std::to_string(group));
  return it->second;
}

SampleSelector::Minibatch SampleSelector::select(size_t batch_size) {
  if (batch_size == 0) fail("batch size must be >= 1");
  if (groups_.empty()) fail("no groups to select from");
  if (policy_->arms().size() != groups_.size())
    fail("the policy has " + std::to_string(policy_->arms().size()) + " arms but there are " +
         std::to_string(groups_.size()) + " groups; add every arm as a group");
  Minibatch batch;
  batch.group = policy_->select();
  const auto& pool = groups_.at(batch.group);
  const size_t n = pool.size();
  const size_t take = std::min(batch_size, n);
  // Partial Fisher-Yates over positions, with the swaps kept sparse: O(take), not O(n).
  std::unordered_map<size_t, size_t> swapped;
  auto at = [&](size_t i) {
    const auto it = swapped.find(i);
    return it == swapped.end() ? i : it->second;
  };
  batch.indices.reserve(take);
  for (size_t i = 0; i < take; ++i) {
    const size_t j = i + static_cast<size_t>(rng_.below(n - i));
    const size_t pick = at(j);
    swapped[j] = at(i);
    batch.indices.push_back(pool[pick]);
  }
  pending_ = batch.group;
  return batch;
}

void SampleSelector::update(double reward) {
  if (!pending_) fail("update() without a select() before it");
  policy_->update(*pending_, reward);
  pending_.reset();
}

nlohmann::json SampleSelector::save_state() const {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& [id, indices] : groups_) groups.push_back({{"id", id}, {"indices", indices}});
  const auto& r = rng_.state();
  return {{"format", "nnr.bandits.sample_selector"},
          {"groups", groups},
          {"pending", pending_ ? nlohmann::json(*pending_) : nlohmann::json(nullptr)},
          {"rng", {r[0], r[1], r[2], r[3]}},
          {"policy", policy_->save_state()}};
}

void SampleSelector::load_state(const nlohmann::json& state) {
  try {
    if (!state.is_object() || state.value("format", "") != "nnr.bandits.sample_selector")
      fail("not a sample selector state");
    std::map<ArmId, std::vector<int64_t>> groups;
    for (const auto& g : state.at("groups")) {
      auto indices = g.at("indices").get<std::vector<int64_t>>();
      if (indices.empty()) fail("saved group with no samples");
      groups[g.at("id").get<ArmId>()] = std::move(indices);
    }
    std::optional<ArmId> pending;
    if (!state.at("pending").is_null()) pending = state.at("pending").get<ArmId>();
    if (pending && !groups.count(*pending)) fail("saved pending group is not a saved group");
    const auto words = state.at("rng").get<std::vector<uint64_t>>();
    if (words.size() != 4) fail("generator state must have 4 words");
    std::vector<ArmId> ids;
    for (const auto& kv : groups) ids.push_back(kv.first);
    std::vector<ArmId> policy_ids;
    for (const auto& a : state.at("policy").at("arms")) policy_ids.push_back(a.at("id").get<ArmId>());
    if (ids != policy_ids) fail("saved groups and the saved policy's arms differ");
    policy_->load_state(state.at("policy"));
    groups_ = std::move(groups);
    pending_ = pending;
    rng_.set_state({words[0], words[1], words[2], words[3]});
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("malformed state: ") + e.what());
  }
}

}  // namespace nnr::bandits
