#include "bandits/reward_normalizer.h"

#include <algorithm>
#include <cmath>

namespace nnr::bandits {

namespace {
PolicyOptions merged_defaults(const Policy& inner) {
  PolicyOptions all = inner.options();
  for (const auto& kv : RewardNormalizer::own_defaults()) all.insert(kv);
  return all;
}
}  // namespace

const PolicyOptions& RewardNormalizer::own_defaults() {
  static const PolicyOptions defaults{{"norm_window", 1000.0}, {"norm_low", 0.2}, {"norm_high", 0.8}};
  return defaults;
}

RewardNormalizer::RewardNormalizer(std::unique_ptr<Policy> inner, const PolicyOptions& options)
    : Policy("norm:" + (inner ? inner->name() : std::string("?")), options,
             inner ? merged_defaults(*inner) : PolicyOptions{}),
      inner_(std::move(inner)) {
  if (!inner_) fail("needs a policy to wrap");
  for (const auto& [key, value] : options)
    if (!own_defaults().count(key) && key != "seed" && inner_->options().at(key) != value)
      fail("option '" + key + "' differs from the wrapped policy's; pass it when building the inner policy");
  const double window = option("norm_window");
  if (!(window >= 1.0 && window == std::floor(window) && window <= 9007199254740992.0))
    fail("option 'norm_window' must be an integer from 1 to 2^53");
  const double low = option("norm_low"), high = option("norm_high");
  if (!(low >= 0.0 && low < high && high <= 1.0)) fail("options must satisfy 0 <= norm_low < norm_high <= 1");
  for (ArmId id : inner_->arms()) Policy::add_arm(id);
}

double RewardNormalizer::quantile(std::vector<double> values, double q) {
  // Nearest rank: an observed value, no interpolation, so ties stay ties.
  const size_t rank = static_cast<size_t>(std::floor(q * static_cast<double>(values.size() - 1) + 0.5));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rank), values.end());
  return values[rank];
}

double RewardNormalizer::normalize(double raw) const {
  if (recent_.empty()) return 0.5;
  const double low = quantile(recent_, option("norm_low"));
  const double high = quantile(recent_, option("norm_high"));
  if (!(high > low)) return raw > high ? 1.0 : raw < low ? 0.0 : 0.5;
  return std::min(1.0, std::max(0.0, (raw - low) / (high - low)));
}

void RewardNormalizer::observe(ArmId arm, double reward) { observe_round({{arm, reward}}); }

void RewardNormalizer::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  const size_t window = static_cast<size_t>(option("norm_window"));
  for (const auto& kv : rewards) {
    if (recent_.size() < window) {
      recent_.push_back(kv.second);
    } else {
      recent_[next_] = kv.second;
      next_ = (next_ + 1) % window;
    }
  }
  std::vector<std::pair<ArmId, double>> normalized;
  normalized.reserve(rewards.size());
  for (const auto& [arm, reward] : rewards) normalized.emplace_back(arm, normalize(reward));
  inner_->update_round(normalized);
}

void RewardNormalizer::add_arm(ArmId arm) {
  Policy::add_arm(arm);
  inner_->add_arm(arm);
}

void RewardNormalizer::retire_arm(ArmId arm) {
  Policy::retire_arm(arm);
  inner_->retire_arm(arm);
}

nlohmann::json RewardNormalizer::save_extra() const {
  return {{"inner", inner_->save_state()}, {"recent", recent_}, {"next", next_}};
}

void RewardNormalizer::load_extra(const nlohmann::json& extra) {
  auto recent = extra.at("recent").get<std::vector<double>>();
  const size_t next = state_integer<size_t>(extra.at("next"), "next");
  const size_t window = static_cast<size_t>(option("norm_window"));
  if (recent.size() > window || (next != 0 && next >= recent.size()))
    fail("saved reward history does not fit option 'norm_window'");
  const auto& inner_state = extra.at("inner");
  // The wrapper's arms were restored from the same save; the inner policy must agree.
  std::vector<ArmId> inner_arms;
  for (const auto& a : inner_state.at("arms")) inner_arms.push_back(state_integer<ArmId>(a.at("id"), "inner arm id"));
  if (inner_arms != arms()) fail("the wrapped policy's saved arms differ from the wrapper's");
  inner_->load_state(inner_state);
  recent_ = std::move(recent);
  next_ = next;
}

}  // namespace nnr::bandits
