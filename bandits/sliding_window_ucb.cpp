#include "bandits/sliding_window_ucb.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

SlidingWindowUcbPolicy::SlidingWindowUcbPolicy(const PolicyOptions& options)
    : IndexPolicy("sliding-window-ucb", options, {{"window", 2500.0}, {"c", 0.3}}) {
  const double window = option("window");
  if (!(window >= 1.0 && window == std::floor(window) && window <= 9007199254740992.0))
    fail("option 'window' must be an integer from 1 to 2^53");
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double SlidingWindowUcbPolicy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  const double horizon = std::min(static_cast<double>(steps()), option("window"));
  return s.mean() + std::sqrt(option("c") * std::log(std::max(1.0, horizon)) / s.pulls);
}

void SlidingWindowUcbPolicy::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  for (const auto& [arm, reward] : rewards) {
    recent_.push_back({arm, reward, steps()});
    observe(arm, reward);
  }
  const int64_t oldest = steps() - static_cast<int64_t>(option("window"));  // rounds <= this slide out
  while (!recent_.empty() && recent_.front().round <= oldest) {
    const Entry old = recent_.front();
    recent_.pop_front();
    ArmStats& o = stats_[old.arm];
    o.pulls -= 1.0;
    o.reward_sum -= old.reward;
    if (o.pulls <= 0.0) o = ArmStats{};  // drop accumulated rounding with the last pull
  }
}

void SlidingWindowUcbPolicy::on_retire(ArmId arm) {
  recent_.erase(std::remove_if(recent_.begin(), recent_.end(), [&](const Entry& e) { return e.arm == arm; }),
                recent_.end());
}

nlohmann::json SlidingWindowUcbPolicy::save_extra() const {
  nlohmann::json window = nlohmann::json::array();
  for (const Entry& e : recent_) window.push_back({e.arm, e.reward, e.round});
  return {{"window", window}};
}

void SlidingWindowUcbPolicy::load_extra(const nlohmann::json& extra) {
  // Entries are [arm, reward, round]. A state saved before rounds were recorded has
  // [arm, reward] with one reward per round, the last one in round steps().
  const auto& window = extra.at("window");
  const int64_t count = static_cast<int64_t>(window.size());
  const int64_t oldest = steps() - static_cast<int64_t>(option("window"));
  std::deque<Entry> recent;
  for (int64_t i = 0; i < count; ++i) {
    const auto& e = window.at(static_cast<size_t>(i));
    const ArmId arm = state_integer<ArmId>(e.at(0), "window arm");
    if (!has_arm(arm)) fail("window entry for arm " + std::to_string(arm) + ", which is not live");
    const int64_t round = e.size() >= 3 ? state_integer<int64_t>(e.at(2), "window round") : steps() - count + 1 + i;
    if (round <= oldest || round > steps() || (!recent.empty() && round < recent.back().round))
      fail("saved window entry of round " + std::to_string(round) + " is not within the last option 'window' rounds, in order");
    recent.push_back({arm, e.at(1).get<double>(), round});
  }
  recent_ = std::move(recent);
}

}  // namespace nnr::bandits
