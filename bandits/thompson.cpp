#include "bandits/thompson.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

namespace {
PolicyOptions defaults_for(ThompsonPolicy::Model model) {
  if (model == ThompsonPolicy::Model::Beta) return {{"prior_alpha", 1.0}, {"prior_beta", 1.0}};
  return {{"prior_variance", 1.0}};
}
}  // namespace

ThompsonPolicy::ThompsonPolicy(Model model, const PolicyOptions& options)
    : Policy(model == Model::Beta ? "thompson" : "thompson-gaussian", options, defaults_for(model)),
      model_(model) {
  for (const auto& [key, value] : this->options())
    if (key != "seed" && !(value > 0.0)) fail("option '" + key + "' must be > 0");
}

double ThompsonPolicy::draw_mean(const ArmStats& s) {
  if (model_ == Model::Beta)
    return rng_.beta(option("prior_alpha") + s.reward_sum, option("prior_beta") + (s.pulls - s.reward_sum));
  double variance = option("prior_variance");
  if (s.pulls >= 2.0) {
    const double mean = s.mean();
    variance = std::max(0.0, (s.reward_sq_sum - s.pulls * mean * mean) / (s.pulls - 1.0));
  }
  return s.mean() + std::sqrt(variance / s.pulls) * rng_.single_normal();
}

std::vector<ArmId> ThompsonPolicy::choose(size_t k) {
  std::vector<double> scores;
  for (ArmId id : arms()) {
    const ArmStats& s = stats_.at(id);
    scores.push_back(s.pulls > 0.0 ? draw_mean(s) : std::numeric_limits<double>::infinity());
  }
  return top_k(k, scores);
}

void ThompsonPolicy::observe(ArmId arm, double reward) {
  if (model_ == Model::Beta) require_unit_reward(reward);
  ArmStats& s = stats_[arm];
  s.pulls += 1.0;
  s.reward_sum += reward;
  s.reward_sq_sum += reward * reward;
}

}  // namespace nnr::bandits
