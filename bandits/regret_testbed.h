#pragma once
// Regret test beds: the standard bandit problems the tests assert on and the bandit_regret
// benchmark prints, from this one code so the two always agree.
//   Stationary   Bernoulli arms with fixed means.
//   Switching    Bernoulli arms whose means change at each switch time, in one of two ways:
//                - rotation (means_after empty): in phase p (after p switches) arm i has mean
//                  base[(i + p * shift) mod K]. With increasing base means and shift 1, the
//                  best arm's mean passes to its left neighbour and the old best becomes the
//                  worst, which every policy that keeps exploring notices quickly.
//                - explicit piecewise-constant means (means_after set, the "abruptly
//                  changing" bed of Garivier & Moulines 2011): `means` holds in the first
//                  segment and means_after[p - 1] after the p-th switch. This can make the old
//                  best arm stay good but no longer best while a formerly poor, rarely pulled
//                  arm becomes the best: a change a stationary index policy is slow to notice.
//   Adversarial  A fixed 0/1 reward table built to fool a deterministic index policy: at
//                step t, UCB1 (c = 2) run on the table so far picks a_t; arm a_t pays 0
//                and every other arm pays 1. UCB1 earns nothing; the best fixed arm earns
//                about T (K - 1) / K.
// Regret: for Bernoulli beds the pseudo-regret sum_t (max_j mu_j(t) - mu_{I_t}(t)) against
// the best arm of each moment; for the adversarial bed the realised regret
// max_j sum_t r_t(j) - sum_t r_t(I_t) against the best fixed arm.
// Each seed gives the policy option seed = s and the reward draws an independent stream.
#include <cstdint>
#include <string>
#include <vector>

#include "bandits/policy.h"

namespace nnr::bandits {

enum class ScenarioKind { Stationary, Switching, Adversarial };
ScenarioKind parse_scenario_kind(const std::string& name);  // throws BanditError
const char* scenario_kind_name(ScenarioKind kind);

struct Scenario {
  ScenarioKind kind = ScenarioKind::Stationary;
  std::vector<double> means;        // one per arm, in [0, 1]; the adversarial bed uses only K
  std::vector<int64_t> switch_at;   // Switching: strictly increasing steps in (0, horizon)
  int64_t shift = 1;                // Switching: rotation per switch (when means_after is empty)
  // Switching: explicit means after each switch, one vector of K means per entry of
  // switch_at (segment p + 1 uses means_after[p]); empty: rotate by `shift` instead.
  std::vector<std::vector<double>> means_after;
  int64_t horizon = 10000;

  int64_t arms() const { return static_cast<int64_t>(means.size()); }
  // Throws BanditError naming the bad field.
  void validate() const;
  // Means in force at step t (0-based).
  std::vector<double> means_at(int64_t t) const;
};

// K means evenly spaced from low to high (inclusive).
std::vector<double> evenly_spaced_means(int64_t k, double low, double high);

struct RegretRun {
  std::vector<double> cumulative_regret;  // [t] = regret after steps 0..t
  std::vector<ArmId> choices;             // arm chosen at each step (arm ids are 0..K-1)
};

// One run of a policy built by make_policy(policy, options + {"seed": seed}).
RegretRun run_policy(const Scenario& scenario, const std::string& policy, PolicyOptions options, uint64_t seed);

struct MeanWithError {
  double mean = 0.0;
  double std_error = 0.0;  // standard error of the mean over runs
};
// Cumulative regret after `steps` steps (1..horizon), over runs.
MeanWithError regret_after(const std::vector<RegretRun>& runs, int64_t steps);
// Fraction of choices in steps [from, to) that were a best arm of that step (Bernoulli beds).
double best_arm_rate(const std::vector<RegretRun>& runs, const Scenario& scenario, int64_t from, int64_t to);

// Upper bound on UCB1's expected regret (Auer et al. 2002, Theorem 1):
//   sum_{i: d_i > 0} 8 ln T / d_i + (1 + pi^2 / 3) sum_i d_i.
double ucb1_regret_bound(const std::vector<double>& means, int64_t horizon);
// EXP3's tuned exploration rate and its bound on expected regret against the best fixed arm
// for rewards in [0, 1] over T steps (Auer et al. 2002, Corollary 3.2, g = T):
//   gamma = min(1, sqrt(K ln K / ((e - 1) T))),  bound = 2 sqrt(e - 1) sqrt(T K ln K).
double exp3_tuned_gamma(int64_t arms, int64_t horizon);
double exp3_regret_bound(int64_t arms, int64_t horizon);

}  // namespace nnr::bandits
