#include "bandits/exp3m.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace nnr::bandits {

// ArmStats use: weight = log-weight (max over live arms is 0), aux = the marginal probability
// the arm had in the last choose (0: no choose since the last round), pulls / reward_sum =
// rewards actually received.

std::vector<size_t> dependent_rounding(std::vector<double> p, Rng& rng) {
  constexpr double kSnap = 1e-12;  // closer than this to 0 or 1 counts as 0 or 1
  double sum = 0.0;
  for (double& v : p) {
    if (!(v >= -kSnap && v <= 1.0 + kSnap))
      throw BanditError("[bandits] dependent rounding: probability " + nlohmann::json(v).dump() +
                        " is outside [0, 1]");
    if (v < kSnap) v = 0.0;
    if (v > 1.0 - kSnap) v = 1.0;
    sum += v;
  }
  const double k = std::round(sum);
  if (std::abs(sum - k) > 1e-6)
    throw BanditError("[bandits] dependent rounding: probabilities sum to " + nlohmann::json(sum).dump() +
                      ", not an integer");
  auto integral = [](double v) { return v == 0.0 || v == 1.0; };
  // Pair the one fractional entry carried along (i) with the next one (j): one of the two
  // becomes 0 or 1, the sum and each expectation stay the same.
  const size_t none = p.size();
  size_t i = none;
  for (size_t j = 0; j < p.size(); ++j) {
    if (integral(p[j])) continue;
    if (i == none) {
      i = j;
      continue;
    }
    const double a = std::min(1.0 - p[i], p[j]);  // move a from j to i ...
    const double b = std::min(p[i], 1.0 - p[j]);  // ... or b from i to j
    if (rng.uniform() * (a + b) < b) {           // probability b / (a + b)
      if (1.0 - p[i] <= p[j]) {
        p[j] -= 1.0 - p[i];
        p[i] = 1.0;
      } else {
        p[i] += p[j];
        p[j] = 0.0;
      }
    } else {
      if (p[i] <= 1.0 - p[j]) {
        p[j] += p[i];
        p[i] = 0.0;
      } else {
        p[i] -= 1.0 - p[j];
        p[j] = 1.0;
      }
    }
    for (size_t x : {i, j}) {
      if (p[x] < kSnap) p[x] = 0.0;
      if (p[x] > 1.0 - kSnap) p[x] = 1.0;
    }
    if (integral(p[i])) i = integral(p[j]) ? none : j;
  }
  // A fractional entry left over is rounding error of the sum: it is within 1e-6 of 0 or 1.
  std::vector<size_t> chosen;
  for (size_t n = 0; n < p.size(); ++n)
    if (p[n] >= 0.5) chosen.push_back(n);
  if (static_cast<double>(chosen.size()) != k)
    throw BanditError("[bandits] dependent rounding: internal error, chose " + std::to_string(chosen.size()) +
                      " of " + nlohmann::json(k).dump());
  return chosen;
}

Exp3MPolicy::Exp3MPolicy(const PolicyOptions& options)
    : Policy("exp3m", options, {{"gamma", 0.1}, {"eta", 0.0}}) {
  if (!(option("gamma") > 0.0 && option("gamma") <= 1.0)) fail("option 'gamma' must be in (0, 1]");
  if (option("eta") < 0.0) fail("option 'eta' must be >= 0 (0: k gamma / K)");
}

ArmStats Exp3MPolicy::initial_stats(ArmId) const {
  ArmStats s;
  s.weight = 0.0;  // log-weights are shifted so the largest is 0: this is the largest
  return s;
}

std::vector<double> Exp3MPolicy::marginals(size_t k, std::vector<ArmId>* capped) const {
  const auto& live = arms();
  const size_t n = live.size();
  if (capped) capped->clear();
  if (k == 0 || n == 0) return std::vector<double>(n, 0.0);
  if (k >= n) {  // every arm is played
    if (capped) *capped = live;
    return std::vector<double>(n, 1.0);
  }
  const double gamma = option("gamma");
  const double kk = static_cast<double>(k), big_k = static_cast<double>(n);
  double top = -INFINITY;
  for (ArmId id : live) top = std::max(top, stats_.at(id).weight);
  std::vector<double> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = std::exp(stats_.at(live[i]).weight - top);
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  std::vector<bool> is_capped(n, false);
  double alpha = INFINITY;
  if (gamma < 1.0) {
    const double c = (1.0 / kk - gamma / big_k) / (1.0 - gamma);
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] > w[b]; });
    if (w[order[0]] >= c * total) {
      // Cap the m largest at alpha = c R / (1 - m c), R = the sum of the others, for the
      // first m whose next weight stays below alpha (then the m capped arms get p = 1 and
      // the others share k - m; m < k).
      double rest = total;
      for (size_t m = 1; m <= n; ++m) {
        rest -= w[order[m - 1]];
        is_capped[order[m - 1]] = true;
        const double denom = 1.0 - static_cast<double>(m) * c;
        alpha = denom > 0.0 ? c * std::max(rest, 0.0) / denom : 0.0;
        if (m == n || denom <= 0.0 || w[order[m]] < alpha) break;
      }
    }
  }
  double capped_total = 0.0;
  for (size_t i = 0; i < n; ++i) capped_total += is_capped[i] ? alpha : w[i];
  std::vector<double> p(n);
  for (size_t i = 0; i < n; ++i) {
    if (is_capped[i]) {
      p[i] = 1.0;
      if (capped) capped->push_back(live[i]);
    } else {
      p[i] = std::min(1.0, kk * ((1.0 - gamma) * w[i] / capped_total + gamma / big_k));
    }
  }
  return p;
}

std::vector<double> Exp3MPolicy::probabilities(size_t k) const {
  if (k > arms().size()) fail("probabilities for " + std::to_string(k) + " of " + std::to_string(arms().size()) + " arms");
  return marginals(k, nullptr);
}

double Exp3MPolicy::estimated_gain(ArmId arm) const {
  if (!has_arm(arm)) fail("no estimated gain for arm " + std::to_string(arm) + ": it is not live");
  const auto it = gain_.find(arm);
  return it == gain_.end() ? 0.0 : it->second;
}

std::vector<ArmId> Exp3MPolicy::choose(size_t k) {
  const auto& live = arms();
  const std::vector<double> p = marginals(k, &capped_);
  last_k_ = k;
  for (size_t i = 0; i < live.size(); ++i) stats_[live[i]].aux = p[i];
  std::vector<size_t> picks = dependent_rounding(p, rng_);
  // Most preferred first: larger probability, then lower id.
  std::stable_sort(picks.begin(), picks.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<ArmId> out;
  out.reserve(picks.size());
  for (size_t i : picks) out.push_back(live[i]);
  return out;
}

void Exp3MPolicy::observe(ArmId arm, double reward) { observe_round({{arm, reward}}); }

void Exp3MPolicy::observe_round(const std::vector<std::pair<ArmId, double>>& rewards) {
  for (const auto& kv : rewards) require_unit_reward(kv.second);
  const auto& live = arms();
  // Rewards without a choose before them use the current probabilities for the last k.
  std::vector<ArmId> current_capped;
  std::vector<double> current;
  const double eta = option("eta") > 0.0 ? option("eta")
                                         : static_cast<double>(last_k_) * option("gamma") / static_cast<double>(live.size());
  for (const auto& [arm, reward] : rewards) {
    ArmStats& s = stats_[arm];
    double prob = s.aux;
    bool is_capped = std::binary_search(capped_.begin(), capped_.end(), arm);
    if (prob <= 0.0) {
      if (current.empty()) current = marginals(std::min(last_k_, live.size()), &current_capped);
      prob = current[static_cast<size_t>(std::lower_bound(live.begin(), live.end(), arm) - live.begin())];
      is_capped = std::binary_search(current_capped.begin(), current_capped.end(), arm);
    }
    const double estimate = reward / prob;
    gain_[arm] += estimate;
    s.pulls += 1.0;
    s.reward_sum += reward;
    if (!is_capped) s.weight += eta * estimate;  // S0 keeps its weight (Exp3.M step 6)
  }
  for (ArmId id : live) stats_[id].aux = 0.0;  // the round is over
  capped_.clear();
  double top = -INFINITY;
  for (ArmId id : live) top = std::max(top, stats_.at(id).weight);
  for (ArmId id : live) stats_[id].weight -= top;
}

void Exp3MPolicy::on_retire(ArmId arm) {
  gain_.erase(arm);
  capped_.erase(std::remove(capped_.begin(), capped_.end(), arm), capped_.end());
}

nlohmann::json Exp3MPolicy::save_extra() const {
  nlohmann::json gains = nlohmann::json::array();
  for (const auto& [arm, g] : gain_) gains.push_back({arm, g});
  return {{"k", last_k_}, {"capped", capped_}, {"gain", gains}};
}

void Exp3MPolicy::load_extra(const nlohmann::json& extra) {
  const size_t k = state_integer<size_t>(extra.at("k"), "k");
  if (k == 0) fail("saved k must be >= 1");
  auto capped = state_integer<std::vector<ArmId>>(extra.at("capped"), "capped arms");
  for (ArmId arm : capped)
    if (!has_arm(arm)) fail("saved capped arm " + std::to_string(arm) + " is not live");
  if (!std::is_sorted(capped.begin(), capped.end())) fail("saved capped arms are not in increasing order");
  std::map<ArmId, double> gains;
  for (const auto& e : extra.at("gain")) {
    const ArmId arm = state_integer<ArmId>(e.at(0), "gain arm");
    if (!has_arm(arm)) fail("saved gain for arm " + std::to_string(arm) + ", which is not live");
    gains[arm] = e.at(1).get<double>();
  }
  last_k_ = k;
  capped_ = std::move(capped);
  gain_ = std::move(gains);
}

}  // namespace nnr::bandits
