// Multiple plays: the clock counts rounds (update_round), Exp3.M and dependent rounding.
#include <algorithm>
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "bandits/discounted_ucb.h"
#include "bandits/epsilon_greedy.h"
#include "bandits/exp3m.h"
#include "bandits/factory.h"
#include "bandits/reward_normalizer.h"
#include "bandits/sliding_window_ucb.h"

using namespace nnr::bandits;
using nnr::Rng;

namespace {

using Round = std::vector<std::pair<ArmId, double>>;

// One round: k arms chosen, their Bernoulli rewards (mean rising with the id) reported at once.
Round play_round(Policy& p, size_t k, Rng& env) {
  Round rewards;
  for (ArmId a : p.select_k(k))
    rewards.emplace_back(a, env.uniform() < 0.1 + 0.1 * static_cast<double>(a % 8) ? 1.0 : 0.0);
  p.update_round(rewards);
  return rewards;
}

}  // namespace

TEST_CASE("the clock advances once per round, not once per reward", "[bandits][rounds]") {
  std::vector<std::string> names = policy_names();
  names.push_back("norm:ucb1");
  names.push_back("norm:exp3m");
  constexpr int kRounds = 40;
  for (const auto& name : names) {
    INFO(name);
    auto p = make_policy(name, {{"seed", 3}});
    for (ArmId a = 0; a < 6; ++a) p->add_arm(a);
    Rng env(1);
    for (int r = 0; r < kRounds; ++r) play_round(*p, 3, env);
    CHECK(p->steps() == kRounds);  // 3 rewards per round: 120 under the old per-reward clock
    if (const auto* norm = dynamic_cast<const RewardNormalizer*>(p.get())) CHECK(norm->inner().steps() == kRounds);
    double pulls = 0.0;
    for (ArmId a : p->arms()) pulls += p->stats(a).pulls;
    // (Discounted and windowed counts are checked below; the normaliser keeps no counts.)
    if (name != "discounted-ucb" && name != "sliding-window-ucb" && name.rfind("norm:", 0) != 0)
      CHECK(pulls == Approx(3.0 * kRounds));
    p->update(0, 1.0);  // a single play is one round too
    CHECK(p->steps() == kRounds + 1);
    p->update_round({});  // a round in which nothing was opened still ticks
    CHECK(p->steps() == kRounds + 2);
  }
  // Epsilon-greedy's decay runs on rounds.
  auto eg = make_policy("epsilon-greedy", {{"epsilon", 0.5}, {"decay", 0.1}});
  for (ArmId a = 0; a < 4; ++a) eg->add_arm(a);
  Rng env(2);
  for (int r = 0; r < 10; ++r) play_round(*eg, 2, env);
  CHECK(dynamic_cast<EpsilonGreedyPolicy&>(*eg).current_epsilon() == Approx(0.5 / (1.0 + 0.1 * 10)));
}

TEST_CASE("update_round validates every reward before using any", "[bandits][rounds]") {
  auto p = make_policy("ucb1");
  for (ArmId a = 0; a < 3; ++a) p->add_arm(a);
  p->update_round({{0, 1.0}, {1, 0.0}});
  const auto before = p->save_state();
  CHECK_THROWS_WITH(p->update_round({{0, 1.0}, {0, 0.0}}), Catch::Contains("[ucb1] arm 0 has two rewards in one round"));
  CHECK_THROWS_WITH(p->update_round({{0, 1.0}, {2, 1.5}}), Catch::Contains("outside [0, 1]"));
  CHECK_THROWS_WITH(p->update_round({{0, 1.0}, {9, 0.5}}), Catch::Contains("not live"));
  CHECK_THROWS_WITH(p->update_round({{0, 1.0}, {1, std::nan("")}}), Catch::Contains("not finite"));
  CHECK(p->save_state() == before);  // nothing counted, not even the round
}

TEST_CASE("discounted UCB discounts every arm once per round, opened or not", "[bandits][rounds]") {
  DiscountedUcbPolicy d({{"gamma", 0.5}});
  for (ArmId a = 0; a < 3; ++a) d.add_arm(a);
  d.update_round({{0, 1.0}, {1, 1.0}, {2, 1.0}});
  for (ArmId a = 0; a < 3; ++a) CHECK(d.stats(a).pulls == 1.0);  // one discount of zero, then one pull
  d.update_round({{0, 0.0}});  // arm 0 opened with reward 0, arms 1 and 2 not opened
  CHECK(d.stats(0).pulls == 1.5);
  CHECK(d.stats(1).pulls == 0.5);                            // decayed by gamma once, like arm 0
  CHECK(d.stats(1).pulls == d.stats(0).pulls - 1.0);         // ... which only added its pull
  CHECK(d.stats(1).reward_sum == d.stats(0).reward_sum);     // both 0.5: reward 0 adds nothing
  CHECK(d.stats(2).pulls == d.stats(1).pulls);
  // k of K arms per round for R rounds: the discounted total is k (1 - gamma^R) / (1 - gamma),
  // as for one arm per round at k times the rate (per-reward discounting would give less).
  DiscountedUcbPolicy e({{"gamma", 0.9}});
  for (ArmId a = 0; a < 5; ++a) e.add_arm(a);
  Rng env(4);
  constexpr int kRounds = 30;
  for (int r = 0; r < kRounds; ++r) play_round(e, 2, env);
  double total = 0.0;
  for (ArmId a : e.arms()) total += e.stats(a).pulls;
  CHECK(total == Approx(2.0 * (1.0 - std::pow(0.9, kRounds)) / (1.0 - 0.9)).epsilon(1e-12));
}

TEST_CASE("the sliding window counts rounds", "[bandits][rounds]") {
  SlidingWindowUcbPolicy sw({{"window", 5}, {"c", 0.3}});
  for (ArmId a = 0; a < 4; ++a) sw.add_arm(a);
  Rng env(5);
  for (int r = 0; r < 12; ++r) play_round(sw, 2, env);
  double pulls = 0.0;
  for (ArmId a : sw.arms()) pulls += sw.stats(a).pulls;
  CHECK(pulls == 10.0);  // the last 5 rounds, 2 rewards each (5 under a per-reward window)
  for (ArmId a : sw.arms()) {
    const auto& s = sw.stats(a);
    if (s.pulls > 0.0) CHECK(sw.index(a) == Approx(s.mean() + std::sqrt(0.3 * std::log(5.0) / s.pulls)));
  }
  // An empty round slides the window too.
  for (int r = 0; r < 5; ++r) sw.update_round({});
  for (ArmId a : sw.arms()) CHECK(sw.stats(a).pulls == 0.0);
  // Saved entries carry their round; a state saved before rounds were recorded ([arm, reward],
  // one reward per round) still loads.
  SlidingWindowUcbPolicy old({{"window", 5}, {"c", 0.3}});
  old.add_arm(0);
  old.add_arm(1);
  old.update(0, 1.0);
  old.update(1, 0.0);
  auto state = old.save_state();
  CHECK(state["extra"]["window"][1] == nlohmann::json({1, 0.0, 2}));
  auto legacy = state;
  legacy["extra"]["window"] = {{0, 1.0}, {1, 0.0}};
  SlidingWindowUcbPolicy again({{"window", 5}, {"c", 0.3}});
  again.load_state(legacy);
  CHECK(again.save_state() == state);
  auto stale = state;
  stale["extra"]["window"][0][2] = -3;  // older than the window
  CHECK_THROWS_WITH(again.load_state(stale), Catch::Contains("not within the last option 'window' rounds"));
}

TEST_CASE("dependent rounding keeps every marginal and picks exactly k distinct", "[bandits][rounds]") {
  // Sum 5; includes certain (1), impossible (0) and fractional entries.
  const std::vector<double> p = {1.0, 0.0, 0.35, 0.65, 0.5, 0.5, 0.2, 0.8, 0.123, 0.877};
  constexpr int kDraws = 200000;
  std::vector<int> hits(p.size(), 0);
  Rng rng(17);
  for (int d = 0; d < kDraws; ++d) {
    const auto chosen = dependent_rounding(p, rng);
    REQUIRE(chosen.size() == 5);
    REQUIRE(std::set<size_t>(chosen.begin(), chosen.end()).size() == 5);
    for (size_t i : chosen) ++hits[i];
  }
  // Standard error at most sqrt(0.25 / 200000) = 0.0011: tolerance 0.005 (4.5 SE).
  for (size_t i = 0; i < p.size(); ++i) {
    INFO("arm " << i << " p " << p[i]);
    CHECK(static_cast<double>(hits[i]) / kDraws == Approx(p[i]).margin(0.005));
  }
  CHECK(hits[0] == kDraws);
  CHECK(hits[1] == 0);
  // Sums that are integers only up to rounding still work.
  std::vector<double> thirds(6, 1.0 / 3.0);
  for (int d = 0; d < 100; ++d) CHECK(dependent_rounding(thirds, rng).size() == 2);
  CHECK_THROWS_WITH(dependent_rounding({0.5, 0.7}, rng), Catch::Contains("not an integer"));
  CHECK_THROWS_WITH(dependent_rounding({1.2, 0.8}, rng), Catch::Contains("outside [0, 1]"));
}

TEST_CASE("exp3m: capped marginals sum to k, and its importance-weighted gain is unbiased", "[bandits][rounds]") {
  CHECK(make_policy("exp3m")->multiple_play());
  CHECK(make_policy("norm:exp3m")->multiple_play());
  CHECK_FALSE(make_policy("exp3")->multiple_play());
  // Warm up without draws (rewards with no select use the current probabilities), so every
  // seed below starts from the same weights: arm 0 dominant enough to be capped at k = 2.
  Exp3MPolicy warm({{"gamma", 0.1}, {"seed", 1}});
  for (ArmId a = 0; a < 6; ++a) warm.add_arm(a);
  for (int r = 0; r < 60; ++r) warm.update_round({{0, 1.0}, {3, 0.4}});
  const size_t k = 2;
  const auto p = warm.probabilities(k);
  double sum = 0.0;
  for (double v : p) {
    CHECK(v > 0.0);
    CHECK(v <= 1.0);
    sum += v;
  }
  CHECK(sum == Approx(2.0).epsilon(1e-12));
  CHECK(p[0] == 1.0);  // capped (S0)
  CHECK(p[3] > p[1]);
  CHECK(p[1] == Approx(p[2]));
  CHECK(p[1] < 0.5);

  const std::vector<double> reward = {0.9, 0.2, 0.5, 0.7, 1.0, 0.1};  // fixed reward vector
  const auto saved = warm.save_state();
  constexpr int kSeeds = 20000;
  std::vector<double> mean(6, 0.0);
  std::vector<int> opened(6, 0);
  for (int seed = 1; seed <= kSeeds; ++seed) {
    auto state = saved;
    const auto words = Rng(static_cast<uint64_t>(seed)).words();
    state["rng"] = {words[0], words[1], words[2], words[3]};
    Exp3MPolicy policy({{"gamma", 0.1}, {"seed", 1}});
    policy.load_state(state);
    std::vector<double> before(6);
    for (ArmId a = 0; a < 6; ++a) before[static_cast<size_t>(a)] = policy.estimated_gain(a);
    Round rewards;
    for (ArmId a : policy.select_k(k)) rewards.emplace_back(a, reward[static_cast<size_t>(a)]);
    REQUIRE(rewards.size() == k);
    policy.update_round(rewards);
    for (ArmId a = 0; a < 6; ++a) mean[static_cast<size_t>(a)] += policy.estimated_gain(a) - before[static_cast<size_t>(a)];
    for (const auto& kv : rewards) ++opened[static_cast<size_t>(kv.first)];
  }
  for (size_t a = 0; a < 6; ++a) {
    INFO("arm " << a << " p " << p[a]);
    mean[a] /= kSeeds;
    // Standard error of the mean estimate: x sqrt((1 - p) / (p N)); tolerance 5 SE (+1e-12).
    const double se = reward[a] * std::sqrt((1.0 - p[a]) / (p[a] * kSeeds));
    CHECK(std::abs(mean[a] - reward[a]) <= 5.0 * se + 1e-12);
    CHECK(static_cast<double>(opened[a]) / kSeeds == Approx(p[a]).margin(0.015));
  }
  CHECK(opened[0] == kSeeds);
}

TEST_CASE("exp3m learns the best k arms and restores exactly", "[bandits][rounds]") {
  auto p = make_policy("exp3m", {{"seed", 8}, {"gamma", 0.05}});
  for (ArmId a = 0; a < 8; ++a) p->add_arm(a);
  Rng env(3);
  std::vector<int> count(8, 0);
  for (int r = 0; r < 3000; ++r) {
    const auto rewards = play_round(*p, 3, env);  // means 0.1 .. 0.8 by id
    if (r >= 2000)
      for (const auto& kv : rewards) ++count[static_cast<size_t>(kv.first)];
  }
  // The best three (5, 6, 7) take most of the last 1000 rounds' picks.
  CHECK(count[5] + count[6] + count[7] > 2 * (count[0] + count[1] + count[2] + count[3] + count[4]));
  auto copy = restore_policy(nlohmann::json::parse(p->save_state().dump()));
  Rng env_copy = env;
  for (int r = 0; r < 50; ++r) CHECK(play_round(*p, 3, env) == play_round(*copy, 3, env_copy));
  CHECK(copy->save_state() == p->save_state());
}
