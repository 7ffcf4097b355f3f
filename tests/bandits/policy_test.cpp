#include <algorithm>
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "bandits/exp3.h"
#include "bandits/factory.h"
#include "bandits/index_policy.h"
#include "bandits/reward_normalizer.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "bandits/ucb1.h"

using namespace nnr::bandits;
using nnr::Rng;

namespace {

const std::vector<std::string> kAllPolicies = {
    "uniform", "epsilon-greedy", "ucb1",  "kl-ucb",         "thompson",           "thompson-gaussian",
    "exp3",    "exp3s",          "norm:ucb1", "discounted-ucb", "sliding-window-ucb", "exp3m"};

std::unique_ptr<Policy> with_arms(const std::string& name, int arms, uint64_t seed = 1) {
  auto p = make_policy(name, {{"seed", static_cast<double>(seed)}});
  for (int a = 0; a < arms; ++a) p->add_arm(10 * a);  // ids are not positions
  return p;
}

// A little Bernoulli stream so the policies have statistics to act on.
void feed(Policy& p, int steps, uint64_t seed) {
  Rng env(seed);
  for (int t = 0; t < steps; ++t) {
    const ArmId arm = p.select();
    const double mean = 0.1 + 0.8 * static_cast<double>(arm) / (10.0 * static_cast<double>(p.arms().size()));
    p.update(arm, env.uniform() < mean ? 1.0 : 0.0);
  }
}

}  // namespace

TEST_CASE("generator gives the same numbers on every machine", "[bandits]") {
  // First outputs of xoshiro256** seeded by splitmix64(0): fixed by the algorithm alone.
  Rng rng(0);
  const uint64_t first = rng.next_u64();
  Rng again(0);
  CHECK(again.next_u64() == first);
  CHECK(first == 0x99ec5f36cb75f2b4ULL);
  Rng draws(7);
  double sum = 0.0, beta_sum = 0.0;
  for (int i = 0; i < 20000; ++i) sum += draws.single_normal();
  for (int i = 0; i < 20000; ++i) beta_sum += draws.beta(2.0, 6.0);
  CHECK(std::abs(sum / 20000) < 0.03);                 // N(0, 1): 4 standard errors
  CHECK(beta_sum / 20000 == Approx(0.25).margin(0.005));  // Beta(2, 6) mean, sd 0.145
  for (int i = 0; i < 1000; ++i) CHECK(draws.below(3) < 3);
}

TEST_CASE("factory lists valid names and options on error", "[bandits]") {
  CHECK_THROWS_WITH(make_policy("ucb2"), Catch::Contains("[bandits] unknown policy 'ucb2'") &&
                                             Catch::Contains("sliding-window-ucb"));
  CHECK_THROWS_WITH(make_policy("ucb1", {{"gamma", 0.9}}), Catch::Contains("[ucb1] unknown option 'gamma'") &&
                                                               Catch::Contains("valid options: c, seed"));
  CHECK_THROWS_AS(make_policy("epsilon-greedy", {{"epsilon", 2.0}}), BanditError);
  CHECK_THROWS_AS(parse_policy_options("c=abc"), BanditError);
  CHECK(parse_policy_options("c=2,seed=7") == PolicyOptions{{"c", 2.0}, {"seed", 7.0}});
  for (const auto& name : policy_names()) CHECK(make_policy(name)->name() == name);
  CHECK(make_policy("norm:thompson", {{"norm_window", 50}})->name() == "norm:thompson");
}

TEST_CASE("a bandit error is a usage error of nnr (exit 2), with the policy's message", "[bandits]") {
  CHECK_THROWS_AS(make_policy("nonsense"), nnr::InvalidArgument);
  CHECK_THROWS_AS(make_policy("ucb1", {{"c", -1.0}}), nnr::InvalidArgument);
  try {
    make_policy("discounted-ucb", {{"gamma", 2.0}});
    FAIL("no error");
  } catch (const nnr::Error& e) {
    CHECK(std::string(e.what()) == "[discounted-ucb] option 'gamma' must be in (0, 1]");
  }
}

TEST_CASE("the UCB family shares one index policy: the largest index wins, ties to the lower id", "[bandits]") {
  for (const std::string name : {"ucb1", "kl-ucb", "discounted-ucb", "sliding-window-ucb"}) {
    INFO(name);
    auto p = make_policy(name);
    auto* index = dynamic_cast<IndexPolicy*>(p.get());
    REQUIRE(index);
    for (ArmId a : {4, 2, 9}) p->add_arm(a);
    CHECK(p->select_k(3) == std::vector<ArmId>{2, 4, 9});  // all +infinity: by id
    p->update_round({{2, 1.0}, {4, 0.0}, {9, 0.5}});
    CHECK(index->index(2) > index->index(9));
    CHECK(index->index(9) > index->index(4));
    CHECK(p->select_k(3) == std::vector<ArmId>{2, 9, 4});
    CHECK(p->stats(9).pulls == 1.0);
    CHECK(p->stats(9).reward_sum == 0.5);
  }
}

TEST_CASE("select_k returns k distinct live arms and never a retired one", "[bandits]") {
  for (const auto& name : kAllPolicies) {
    INFO(name);
    auto p = with_arms(name, 8);
    feed(*p, 200, 3);
    p->retire_arm(30);
    p->retire_arm(0);
    for (int round = 0; round < 50; ++round) {
      for (size_t k : {size_t{0}, size_t{1}, size_t{3}, size_t{6}}) {
        const auto chosen = p->select_k(k);
        CHECK(chosen.size() == k);
        CHECK(std::set<ArmId>(chosen.begin(), chosen.end()).size() == k);
        for (ArmId a : chosen) CHECK(p->has_arm(a));
        std::vector<std::pair<ArmId, double>> rewards;
        for (ArmId a : chosen) rewards.emplace_back(a, 0.5);
        p->update_round(rewards);
      }
      CHECK(p->select() != 30);
    }
    CHECK_THROWS_WITH(p->select_k(7), Catch::Contains("only 6 are live"));
    CHECK_THROWS_AS(p->update(30, 1.0), BanditError);
    CHECK_THROWS_AS(p->retire_arm(30), BanditError);
    CHECK_THROWS_AS(p->add_arm(10), BanditError);
  }
}

TEST_CASE("a new arm starts optimistic: index policies try it next", "[bandits]") {
  for (const std::string name : {"epsilon-greedy", "ucb1", "kl-ucb", "thompson", "thompson-gaussian",
                                 "discounted-ucb", "sliding-window-ucb", "norm:ucb1"}) {
    INFO(name);
    auto p = make_policy(name, name == "epsilon-greedy" ? PolicyOptions{{"epsilon", 0.0}} : PolicyOptions{});
    for (int a = 0; a < 4; ++a) p->add_arm(a);
    feed(*p, 300, 5);
    p->add_arm(99);
    CHECK(p->select() == 99);
  }
  auto exp3 = with_arms("exp3", 4);
  feed(*exp3, 300, 5);
  exp3->add_arm(99);
  const auto& e = dynamic_cast<const Exp3Policy&>(*exp3);
  const auto probs = e.probabilities();
  CHECK(probs.back() == Approx(*std::max_element(probs.begin(), probs.end())));
}

TEST_CASE("same seed gives the same choices, another seed differs", "[bandits]") {
  for (const auto& name : kAllPolicies) {
    INFO(name);
    auto a = with_arms(name, 6, 11), b = with_arms(name, 6, 11), c = with_arms(name, 6, 12);
    std::vector<ArmId> ca, cb, cc;
    Rng env_a(1), env_b(1), env_c(1);
    for (int t = 0; t < 300; ++t) {
      ca.push_back(a->select());
      cb.push_back(b->select());
      cc.push_back(c->select());
      a->update(ca.back(), env_a.uniform());
      b->update(cb.back(), env_b.uniform());
      c->update(cc.back(), env_c.uniform());
    }
    CHECK(ca == cb);
    if (name == "uniform" || name == "thompson" || name == "exp3" || name == "exp3s" || name == "exp3m") CHECK(ca != cc);
  }
}

TEST_CASE("policies that need rewards in [0, 1] say so and point to the normaliser", "[bandits]") {
  for (const std::string name : {"ucb1", "kl-ucb", "thompson", "exp3", "exp3s", "exp3m", "discounted-ucb", "sliding-window-ucb"}) {
    INFO(name);
    auto p = with_arms(name, 2);
    CHECK_THROWS_WITH(p->update(0, 3.5), Catch::Contains("outside [0, 1]") && Catch::Contains("norm:"));
    auto wrapped = with_arms("norm:" + name, 2);
    CHECK_NOTHROW(wrapped->update(0, 3.5));
    CHECK_NOTHROW(wrapped->update(10, -1e6));
  }
  auto gaussian = with_arms("thompson-gaussian", 2);
  CHECK_NOTHROW(gaussian->update(0, -42.0));
  CHECK_THROWS_AS(gaussian->update(0, std::nan("")), BanditError);
}

TEST_CASE("reward normaliser maps running quantiles to [0, 1]", "[bandits]") {
  RewardNormalizer norm(make_policy("ucb1"), {{"norm_window", 5}, {"norm_low", 0.25}, {"norm_high", 0.75}});
  norm.add_arm(0);
  CHECK(norm.normalize(3.0) == 0.5);  // no history yet
  for (double r : {100.0, 200.0, 300.0, 400.0, 500.0}) norm.update(0, r);
  // Window {100..500}: nearest-rank quantiles 200 (25 %) and 400 (75 %).
  CHECK(norm.normalize(300.0) == Approx(0.5));
  CHECK(norm.normalize(150.0) == 0.0);
  CHECK(norm.normalize(1e9) == 1.0);
  for (double r : {1.0, 2.0, 3.0, 4.0, 5.0}) norm.update(0, r);  // the window forgets the old scale
  CHECK(norm.normalize(3.0) == Approx(0.5));
  CHECK(norm.inner().stats(0).pulls == 10.0);
  CHECK(norm.inner().stats(0).reward_sum <= 10.0);
}

TEST_CASE("sliding window forgets, discounting fades old rewards", "[bandits]") {
  auto sw = make_policy("sliding-window-ucb", {{"window", 4}});
  sw->add_arm(0);
  sw->add_arm(1);
  for (int i = 0; i < 3; ++i) sw->update(0, 1.0);
  for (int i = 0; i < 4; ++i) sw->update(1, 0.0);
  CHECK(sw->stats(0).pulls == 0.0);  // all its rewards slid out
  CHECK(sw->stats(1).pulls == 4.0);
  auto d = make_policy("discounted-ucb", {{"gamma", 0.5}});
  d->add_arm(0);
  d->add_arm(1);
  d->update(0, 1.0);
  d->update(1, 0.0);
  d->update(1, 0.0);
  CHECK(d->stats(0).pulls == Approx(0.25));
  CHECK(d->stats(0).reward_sum == Approx(0.25));
  CHECK(d->stats(1).pulls == Approx(1.5));
}

TEST_CASE("ucb1 index is mean + sqrt(c ln t / n) exactly, per arm", "[bandits]") {
  // Two arms with different pull counts: a slip in the mean, the log, the constant or the
  // division by the pull count changes at least one of these values.
  auto p = make_policy("ucb1", {{"c", 0.5}});
  p->add_arm(3);
  p->add_arm(8);
  auto* ucb = dynamic_cast<Ucb1Policy*>(p.get());
  REQUIRE(ucb != nullptr);
  CHECK(std::isinf(ucb->index(3)));  // no reward yet: chosen first
  p->update(3, 1.0);
  p->update(8, 0.25);
  p->update(3, 0.0);
  p->update(3, 0.5);
  REQUIRE(p->steps() == 4);
  const double log_t = std::log(4.0);
  CHECK(ucb->index(3) == Approx(0.5 + std::sqrt(0.5 * log_t / 3.0)).epsilon(1e-12));
  CHECK(ucb->index(8) == Approx(0.25 + std::sqrt(0.5 * log_t / 1.0)).epsilon(1e-12));
}
