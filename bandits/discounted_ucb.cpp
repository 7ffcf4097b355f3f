#include "bandits/discounted_ucb.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

DiscountedUcbPolicy::DiscountedUcbPolicy(const PolicyOptions& options)
    : IndexPolicy("discounted-ucb", options, {{"gamma", 0.9995}, {"c", 0.3}}) {
  if (!(option("gamma") > 0.0 && option("gamma") <= 1.0)) fail("option 'gamma' must be in (0, 1]");
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double DiscountedUcbPolicy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  double total = 0.0;
  for (const auto& kv : stats_) total += kv.second.pulls;
  const double log_n = std::log(std::max(1.0, total));
  return s.mean() + std::sqrt(option("c") * log_n / s.pulls);
}

void DiscountedUcbPolicy::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  const double gamma = option("gamma");
  // A faded arm keeps at least the smallest normal count, so it stays "pulled" (a finite,
  // large index) instead of looking like a new arm.
  for (auto& kv : stats_) {
    if (kv.second.pulls <= 0.0) continue;  // a new arm stays new
    kv.second.pulls = std::max(kv.second.pulls * gamma, std::numeric_limits<double>::min());
    kv.second.reward_sum *= gamma;
  }
  for (const auto& [arm, reward] : rewards) observe(arm, reward);
}

}  // namespace nnr::bandits
