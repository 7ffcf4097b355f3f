#include "bandits/sliding_window_ucb.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

SlidingWindowUcbPolicy::SlidingWindowUcbPolicy(const PolicyOptions& options)
    : Policy("sliding-window-ucb", options, {{"window", 2500.0}, {"c", 0.3}}) {
  const double window = option("window");
  if (!(window >= 1.0 && window == std::floor(window))) fail("option 'window' must be an integer >= 1");
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double SlidingWindowUcbPolicy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  const double horizon = std::min(static_cast<double>(steps()), option("window"));
  return s.mean() + std::sqrt(option("c") * std::log(std::max(1.0, horizon)) / s.pulls);
}

std::vector<ArmId> SlidingWindowUcbPolicy::choose(size_t k) {
  std::vector<double> scores;
  for (ArmId id : arms()) scores.push_back(index(id));
  return top_k(k, scores);
}

void SlidingWindowUcbPolicy::observe(ArmId arm, double reward) {
  require_unit_reward(reward);
  recent_.emplace_back(arm, reward);
  ArmStats& s = stats_[arm];
  s.pulls += 1.0;
  s.reward_sum += reward;
  while (recent_.size() > static_cast<size_t>(option("window"))) {
    const auto [old_arm, old_reward] = recent_.front();
    recent_.pop_front();
    ArmStats& o = stats_[old_arm];
    o.pulls -= 1.0;
    o.reward_sum -= old_reward;
    if (o.pulls <= 0.0) o = ArmStats{};  // drop accumulated rounding with the last pull
  }
}

void SlidingWindowUcbPolicy::on_retire(ArmId arm) {
  recent_.erase(std::remove_if(recent_.begin(), recent_.end(), [&](const auto& e) { return e.first == arm; }),
                recent_.end());
}

nlohmann::json SlidingWindowUcbPolicy::save_extra() const {
  nlohmann::json window = nlohmann::json::array();
  for (const auto& [arm, reward] : recent_) window.push_back({arm, reward});
  return {{"window", window}};
}

void SlidingWindowUcbPolicy::load_extra(const nlohmann::json& extra) {
  std::deque<std::pair<ArmId, double>> recent;
  for (const auto& e : extra.at("window")) {
    const ArmId arm = e.at(0).get<ArmId>();
    if (!has_arm(arm)) fail("window entry for arm " + std::to_string(arm) + ", which is not live");
    recent.emplace_back(arm, e.at(1).get<double>());
  }
  if (recent.size() > static_cast<size_t>(option("window"))) fail("saved window is longer than option 'window'");
  recent_ = std::move(recent);
}

}  // namespace nnr::bandits
