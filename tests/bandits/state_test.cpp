#include <catch2/catch.hpp>

#include "bandits/factory.h"

using namespace nnr::bandits;
using nnr::Rng;

namespace {

// Runs `steps` rounds (k arms at a time, their rewards reported as one round) with rewards
// from its own stream.
std::vector<ArmId> play(Policy& p, Rng& env, int steps, size_t k) {
  std::vector<ArmId> chosen;
  for (int t = 0; t < steps; ++t) {
    std::vector<std::pair<ArmId, double>> rewards;
    for (ArmId a : p.select_k(k)) {
      chosen.push_back(a);
      rewards.emplace_back(a, env.uniform() < 0.2 + 0.01 * static_cast<double>(a) ? 1.0 : 0.0);
    }
    if (k == 1) p.update(rewards[0].first, rewards[0].second);
    else p.update_round(rewards);
  }
  return chosen;
}

}  // namespace

TEST_CASE("save, restore and continue gives exactly the choices of never stopping", "[bandits][state]") {
  std::vector<std::string> names = policy_names();
  names.push_back("norm:thompson");
  names.push_back("norm:sliding-window-ucb");
  names.push_back("norm:exp3m");
  for (const auto& name : names) {
    for (size_t k : {size_t{1}, size_t{3}}) {
      INFO(name << " k=" << k);
      auto straight = make_policy(name, {{"seed", 5}});
      for (ArmId a : {3, 7, 11, 20, 42, 50}) straight->add_arm(a);
      Rng env(9);
      play(*straight, env, 150, k);
      straight->retire_arm(7);
      straight->add_arm(60);
      play(*straight, env, 50, k);

      // Round trip through text, as a file written days earlier would be.
      const std::string saved = straight->save_state().dump();
      auto restored = restore_policy(nlohmann::json::parse(saved));
      Rng env_copy = env;
      const auto expected = play(*straight, env, 200, k);
      const auto got = play(*restored, env_copy, 200, k);
      CHECK(got == expected);
      CHECK(restored->save_state() == straight->save_state());
    }
  }
}

TEST_CASE("loading bad state is a clear error and leaves the policy unchanged", "[bandits][state]") {
  auto p = make_policy("sliding-window-ucb");
  p->add_arm(1);
  p->add_arm(2);
  p->update(1, 1.0);
  const auto good = p->save_state();

  auto other = make_policy("ucb1");
  CHECK_THROWS_WITH(other->load_state(good), Catch::Contains("[ucb1] state was saved by policy 'sliding-window-ucb'"));
  auto different = make_policy("sliding-window-ucb", {{"window", 10}});
  CHECK_THROWS_WITH(different->load_state(good), Catch::Contains("restore_policy"));

  auto broken = good;
  broken["arms"][0].erase("pulls");
  CHECK_THROWS_WITH(p->load_state(broken), Catch::Contains("malformed state"));
  broken = good;
  broken["extra"]["window"][0][0] = 77;  // an arm that is not live
  CHECK_THROWS_WITH(p->load_state(broken), Catch::Contains("not live"));
  CHECK(p->save_state() == good);
  broken = good;
  broken["version"] = 99;
  CHECK_THROWS_WITH(p->load_state(broken), Catch::Contains("version"));
  CHECK_THROWS_WITH(p->load_state(nlohmann::json::array()), Catch::Contains("not a bandit policy state"));
  CHECK_THROWS_AS(restore_policy(nlohmann::json{{"policy", 3}}), BanditError);
  CHECK(p->save_state() == good);
}
