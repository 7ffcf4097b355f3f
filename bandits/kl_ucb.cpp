#include "bandits/kl_ucb.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

namespace {
constexpr double kClamp = 1e-15;      // keeps log() finite at 0 and 1
constexpr int kBisectionSteps = 40;  // interval width 2^-40: far below any reward gap
}  // namespace

KlUcbPolicy::KlUcbPolicy(const PolicyOptions& options) : IndexPolicy("kl-ucb", options, {{"c", 0.0}}) {
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double KlUcbPolicy::bernoulli_kl(double p, double q) {
  p = std::min(std::max(p, kClamp), 1.0 - kClamp);
  q = std::min(std::max(q, kClamp), 1.0 - kClamp);
  return p * std::log(p / q) + (1.0 - p) * std::log((1.0 - p) / (1.0 - q));
}

double KlUcbPolicy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  const double t = std::max(1.0, static_cast<double>(steps()));
  const double log_t = std::log(t);
  const double budget = (log_t + option("c") * std::log(std::max(1.0, log_t))) / s.pulls;
  const double mean = std::min(1.0, std::max(0.0, s.mean()));
  double lo = mean, hi = 1.0;
  for (int i = 0; i < kBisectionSteps; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (bernoulli_kl(mean, mid) > budget)
      hi = mid;
    else
      lo = mid;
  }
  return lo;
}

}  // namespace nnr::bandits
