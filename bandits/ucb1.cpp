#include "bandits/ucb1.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace nnr::bandits {

Ucb1Policy::Ucb1Policy(const PolicyOptions& options) : IndexPolicy("ucb1", options, {{"c", 2.0}}) {
  if (option("c") < 0.0) fail("option 'c' must be >= 0");
}

double Ucb1Policy::index(ArmId arm) const {
  const ArmStats& s = stats(arm);
  if (s.pulls <= 0.0) return std::numeric_limits<double>::infinity();
  const double log_t = std::log(std::max(1.0, static_cast<double>(steps())));
  return s.mean() + std::sqrt(option("c") * log_t / s.pulls);
}

}  // namespace nnr::bandits
