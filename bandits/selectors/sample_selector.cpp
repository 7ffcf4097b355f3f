#include "bandits/selectors/sample_selector.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace nnr::bandits {

namespace {
[[noreturn]] void fail(const std::string& message) { throw BanditError("[sample selector] " + message); }

// Positions 0..n-1 in random order, one at a time: a Fisher-Yates shuffle with the swaps kept
// sparse, so drawing m of n costs O(m), not O(n).
class SparseShuffle {
 public:
  explicit SparseShuffle(size_t n) : n_(n) {}
  size_t remaining() const { return n_ - i_; }
  size_t next(Rng& rng) {
    const size_t j = i_ + static_cast<size_t>(rng.below(n_ - i_));
    const size_t pick = at(j);
    swapped_[j] = at(i_);
    ++i_;
    return pick;
  }

 private:
  size_t at(size_t i) const {
    const auto it = swapped_.find(i);
    return it == swapped_.end() ? i : it->second;
  }
  size_t n_;
  size_t i_ = 0;
  std::unordered_map<size_t, size_t> swapped_;
};

std::vector<size_t> draw_positions(Rng& rng, size_t n, size_t take) {
  SparseShuffle shuffle(n);
  std::vector<size_t> out;
  out.reserve(take);
  for (size_t i = 0; i < take; ++i) out.push_back(shuffle.next(rng));
  return out;
}
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
  const size_t take = std::min(batch_size, pool.size());
  batch.indices.reserve(mixed_batches_ ? batch_size : take);
  for (size_t pos : draw_positions(rng_, pool.size(), take)) batch.indices.push_back(pool[pos]);
  batch.from_group = batch.indices.size();
  if (mixed_batches_ && batch.indices.size() < batch_size) {
    // Top up from the other groups: positions in their concatenation, drawn without
    // replacement until the batch is full (a sample index already in it is skipped, in case
    // groups overlap).
    std::vector<const std::vector<int64_t>*> others;
    std::vector<size_t> ends;  // cumulative sizes
    size_t total = 0;
    for (const auto& [id, indices] : groups_) {
      if (id == batch.group) continue;
      others.push_back(&indices);
      total += indices.size();
      ends.push_back(total);
    }
    std::unordered_set<int64_t> in_batch(batch.indices.begin(), batch.indices.end());
    SparseShuffle shuffle(total);
    while (batch.indices.size() < batch_size && shuffle.remaining() > 0) {
      const size_t pos = shuffle.next(rng_);
      const size_t g = static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), pos) - ends.begin());
      const int64_t index = (*others[g])[pos - (g == 0 ? 0 : ends[g - 1])];
      if (in_batch.insert(index).second) batch.indices.push_back(index);
    }
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
  return {{"format", "nnr.bandits.sample_selector"},
          {"groups", groups},
          {"pending", pending_ ? nlohmann::json(*pending_) : nlohmann::json(nullptr)},
          {"rng", rng_state(rng_)},
          {"mixed_batches", mixed_batches_},
          {"policy", policy_->save_state()}};
}

void SampleSelector::load_state(const nlohmann::json& state) {
  try {
    if (!state.is_object() || state.value("format", "") != "nnr.bandits.sample_selector")
      fail("not a sample selector state");
    std::map<ArmId, std::vector<int64_t>> groups;
    for (const auto& g : state.at("groups")) {
      auto indices = state_integer<std::vector<int64_t>>(g.at("indices"), "group indices");
      if (indices.empty()) fail("saved group with no samples");
      groups[state_integer<ArmId>(g.at("id"), "group id")] = std::move(indices);
    }
    std::optional<ArmId> pending;
    if (!state.at("pending").is_null()) pending = state_integer<ArmId>(state.at("pending"), "pending group");
    if (pending && !groups.count(*pending)) fail("saved pending group is not a saved group");
    const auto words = state_rng_words(state.at("rng"));
    const bool mixed = state.value("mixed_batches", false);  // absent in states saved before it existed
    std::vector<ArmId> ids;
    for (const auto& kv : groups) ids.push_back(kv.first);
    std::vector<ArmId> policy_ids;
    for (const auto& a : state.at("policy").at("arms")) policy_ids.push_back(state_integer<ArmId>(a.at("id"), "arm id"));
    if (ids != policy_ids) fail("saved groups and the saved policy's arms differ");
    policy_->load_state(state.at("policy"));
    groups_ = std::move(groups);
    pending_ = pending;
    mixed_batches_ = mixed;
    rng_.set_words(words);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("malformed state: ") + e.what());
  }
}

}  // namespace nnr::bandits
