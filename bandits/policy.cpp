#include "bandits/policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace nnr::bandits {

namespace {

constexpr const char* kStateFormat = "nnr.bandits.policy";
constexpr int kStateVersion = 1;

std::string format_options(const PolicyOptions& options) {
  std::string out;
  for (const auto& [key, value] : options) {
    if (!out.empty()) out += ", ";
    out += key + "=" + nlohmann::json(value).dump();
  }
  return out;
}

}  // namespace

nlohmann::json rng_state(const Rng& rng) { return rng.words(); }

std::array<uint64_t, 4> state_rng_words(const nlohmann::json& value) {
  const auto words = state_integer<std::vector<uint64_t>>(value, "rng");
  if (words.size() != 4) throw BanditError("[bandits] malformed state: generator state must have 4 words");
  return {words[0], words[1], words[2], words[3]};
}

Policy::Policy(std::string name, const PolicyOptions& given, const PolicyOptions& defaults)
    : name_(std::move(name)), options_(defaults) {
  options_.emplace("seed", 0.0);
  for (const auto& [key, value] : given) {
    if (!options_.count(key)) {
      std::string valid;
      for (const auto& kv : options_) valid += (valid.empty() ? "" : ", ") + kv.first;
      fail("unknown option '" + key + "'; valid options: " + valid);
    }
    if (!std::isfinite(value)) fail("option '" + key + "' must be finite");
    options_[key] = value;
  }
  const double seed = options_.at("seed");
  if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740992.0)
    fail("option 'seed' must be a non-negative integer up to 2^53, got " + nlohmann::json(seed).dump());
  rng_.reseed(static_cast<uint64_t>(seed));
}

void Policy::fail(const std::string& message) const { throw BanditError("[" + name_ + "] " + message); }

void Policy::require_unit_reward(double reward) const {
  if (!(reward >= 0.0 && reward <= 1.0))
    fail("reward " + nlohmann::json(reward).dump() +
         " is outside [0, 1]; wrap the policy with the reward normaliser (\"norm:" + name_ + "\")");
}

ArmId Policy::select() { return select_k(1).front(); }

std::vector<ArmId> Policy::select_k(size_t k) {
  if (k > arms_.size())
    fail("asked for " + std::to_string(k) + " distinct arms but only " + std::to_string(arms_.size()) +
         " are live");
  if (k == 0) return {};
  return choose(k);
}

void Policy::update(ArmId arm, double reward) { update_round({{arm, reward}}); }

void Policy::update_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  for (size_t i = 0; i < rewards.size(); ++i) {
    const auto [arm, reward] = rewards[i];
    if (!has_arm(arm)) fail("reward for arm " + std::to_string(arm) + ", which is not live");
    if (!std::isfinite(reward)) fail("reward for arm " + std::to_string(arm) + " is not finite");
    if (unit_rewards()) require_unit_reward(reward);
    for (size_t j = 0; j < i; ++j)
      if (rewards[j].first == arm) fail("arm " + std::to_string(arm) + " has two rewards in one round");
  }
  ++steps_;
  observe_round(rewards);
}

void Policy::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  for (const auto& [arm, reward] : rewards) observe(arm, reward);
}

void Policy::add_arm(ArmId arm) {
  if (has_arm(arm)) fail("arm " + std::to_string(arm) + " is already live");
  arms_.insert(std::upper_bound(arms_.begin(), arms_.end(), arm), arm);
  stats_[arm] = initial_stats(arm);
}

void Policy::retire_arm(ArmId arm) {
  if (!has_arm(arm)) fail("cannot retire arm " + std::to_string(arm) + ": it is not live");
  arms_.erase(std::lower_bound(arms_.begin(), arms_.end(), arm));
  stats_.erase(arm);
  on_retire(arm);
}

bool Policy::has_arm(ArmId arm) const { return std::binary_search(arms_.begin(), arms_.end(), arm); }

const ArmStats& Policy::stats(ArmId arm) const {
  const auto it = stats_.find(arm);
  if (it == stats_.end()) fail("no statistics for arm " + std::to_string(arm) + ": it is not live");
  return it->second;
}

ArmStats Policy::initial_stats(ArmId) const { return ArmStats{}; }

std::vector<ArmId> Policy::top_k(size_t k, const std::vector<double>& scores) const {
  std::vector<size_t> order(arms_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Stable sort on descending score keeps increasing-id order among ties.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<ArmId> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) out.push_back(arms_[order[i]]);
  return out;
}

std::vector<ArmId> Policy::draw_k(size_t k, std::vector<double> weights) {
  std::vector<ArmId> out;
  out.reserve(k);
  for (size_t n = 0; n < k; ++n) {
    double total = 0.0;
    for (double w : weights) total += w;
    double target = rng_.uniform() * total;
    size_t pick = weights.size();
    for (size_t i = 0; i < weights.size(); ++i) {
      if (weights[i] <= 0.0) continue;
      pick = i;  // the last positive weight absorbs rounding at the top end
      if (target < weights[i]) break;
      target -= weights[i];
    }
    if (pick == weights.size()) {  // every remaining weight is zero: take the lowest id left
      for (size_t i = 0; i < weights.size() && pick == weights.size(); ++i)
        if (weights[i] >= 0.0) pick = i;
    }
    out.push_back(arms_[pick]);
    weights[pick] = -1.0;  // drawn: never again
  }
  return out;
}

nlohmann::json Policy::save_state() const {
  nlohmann::json arms = nlohmann::json::array();
  for (ArmId id : arms_) {
    const ArmStats& s = stats_.at(id);
    arms.push_back({{"id", id},
                    {"pulls", s.pulls},
                    {"reward_sum", s.reward_sum},
                    {"reward_sq_sum", s.reward_sq_sum},
                    {"weight", s.weight},
                    {"aux", s.aux}});
  }
  return {{"format", kStateFormat}, {"version", kStateVersion}, {"policy", name()},
          {"options", options_},    {"steps", steps_},          {"rng", rng_state(rng_)},
          {"arms", arms},           {"extra", save_extra()}};
}

void Policy::load_state(const nlohmann::json& state) {
  try {
    if (!state.is_object() || state.value("format", "") != kStateFormat)
      fail("not a bandit policy state (expected \"format\": \"" + std::string(kStateFormat) + "\")");
    if (state_integer<int64_t>(state.at("version"), "version") != kStateVersion)
      fail("state version " + state.at("version").dump() + " is not supported (expected " +
           std::to_string(kStateVersion) + ")");
    const std::string saved = state.at("policy").get<std::string>();
    if (saved != name()) fail("state was saved by policy '" + saved + "'");
    const auto saved_options = state.at("options").get<PolicyOptions>();
    if (saved_options != options_)
      fail("state was saved with options {" + format_options(saved_options) + "} but this policy has {" +
           format_options(options_) + "}; use restore_policy(state) to rebuild it with the saved options");
    const auto words = state_rng_words(state.at("rng"));
    std::vector<ArmId> arms;
    std::map<ArmId, ArmStats> stats;
    for (const auto& a : state.at("arms")) {
      const ArmId id = state_integer<ArmId>(a.at("id"), "arm id");
      if (!arms.empty() && id <= arms.back()) fail("arm ids in the state are not strictly increasing");
      ArmStats s;
      s.pulls = a.at("pulls").get<double>();
      s.reward_sum = a.at("reward_sum").get<double>();
      s.reward_sq_sum = a.at("reward_sq_sum").get<double>();
      s.weight = a.at("weight").get<double>();
      s.aux = a.at("aux").get<double>();
      arms.push_back(id);
      stats[id] = s;
    }
    const int64_t steps = state_integer<int64_t>(state.at("steps"), "steps");
    if (steps < 0) fail("negative step count in the state");
    // Commit only after everything parsed, so a bad state leaves the policy unchanged
    // (load_extra validates before it assigns).
    const auto old_arms = arms_;
    const auto old_stats = stats_;
    const int64_t old_steps = steps_;
    arms_ = std::move(arms);
    stats_ = std::move(stats);
    steps_ = steps;  // load_extra may check its state against the clock
    try {
      load_extra(state.at("extra"));
    } catch (...) {
      arms_ = old_arms;
      stats_ = old_stats;
      steps_ = old_steps;
      throw;
    }
    rng_.set_words(words);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("malformed state: ") + e.what());
  }
}

}  // namespace nnr::bandits
