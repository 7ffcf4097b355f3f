// Weight selector: partial groups (every arm openable), row priority, select_in_order,
// per-group rewards, exp3m's k, state checks; sample selector: mixed batches.
#include <algorithm>
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "bandits/factory.h"
#include "bandits/selectors/sample_selector.h"
#include "bandits/selectors/weight_selector.h"

using namespace nnr::bandits;
using nnr::Rng;

namespace {

// MLP 784-256-256-10: fc1 is 75 % of the weights, three times a 25 % budget.
std::vector<ParameterInfo> mlp() {
  return {{"fc1.weight", {256, 784}, ""}, {"fc1.bias", {256}, ""}, {"fc2.weight", {256, 256}, ""},
          {"fc2.bias", {256}, ""},        {"fc3.weight", {10, 256}, ""}, {"fc3.bias", {10}, ""}};
}
constexpr int64_t kFc1 = 256 * 785, kFc2 = 256 * 257, kFc3 = 10 * 257;
constexpr int64_t kTotal = kFc1 + kFc2 + kFc3;  // 269322

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> v;
  for (int64_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

// Masks agree with opened(): counts, followers, partial rows; budget kept.
void check_masks(const WeightSelector& sel, const std::vector<nnr::UpdateMask>& masks) {
  const auto& params = sel.parameters();
  REQUIRE(masks.size() == params.size());
  int64_t opened = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& shape = params[i].shape;
    const int64_t numel = nnr::shape_numel(shape);
    CHECK_NOTHROW(masks[i].validate(numel, shape[0], params[i].name));
    opened += masks[i].count(numel, shape[0]);
  }
  CHECK(opened == sel.selected_numel());
  CHECK(sel.selected_numel() <= sel.budget_numel());
  int64_t listed = 0;
  for (const auto& o : sel.opened()) {
    const auto& g = sel.groups()[static_cast<size_t>(o.id)];
    CHECK(o.parameter == g.parameter);
    CHECK(o.row_begin == g.row_begin);
    CHECK(o.row_end == g.row_end);
    CHECK(!o.rows.empty());
    CHECK(std::is_sorted(o.rows.begin(), o.rows.end()));
    CHECK(o.rows.front() >= g.row_begin);
    CHECK(o.rows.back() < g.row_end);
    CHECK(o.partial == (static_cast<int64_t>(o.rows.size()) < g.row_end - g.row_begin));
    CHECK(o.numel == static_cast<int64_t>(o.rows.size()) * g.row_numel);
    listed += o.numel;
  }
  CHECK(listed == sel.selected_numel());
  CHECK(sel.selected().size() == sel.opened().size());
}

}  // namespace

TEST_CASE("weight selector: every arm is opened within a few rounds, whatever its size", "[bandits][selectors]") {
  // One group per parameter, 25 % budget: fc1 (75 %) never fits whole, so it is opened
  // partially (85 of its 256 rows). Rewards per group from a fixed seeded model in which fc1
  // is the worst arm (Bernoulli 0.1; fc2 0.5, fc3 0.9), so only exploration opens it.
  std::vector<std::string> names = policy_names();
  for (const std::string extra : {"norm:ucb1", "norm:thompson-gaussian", "norm:exp3m", "norm:exp3s"})
    names.push_back(extra);
  // The bounds asserted: a policy that ranks every arm has the budget filled down its
  // ranking, so the group ranked first always opens (partially if it is fc1) and the rest
  // takes what is left; untried arms rank first (or are drawn), so all three open by round 2
  // (observed: 2 for every such policy and seed). exp3m opens k = 1 group a round (25 % is
  // less than one average group), each with probability >= gamma / K: bound 12 (observed
  // worst 10 over these seeds).
  constexpr int kRankingBound = 2, kMultiplePlayBound = 12;
  for (const auto& name : names) {
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      INFO(name << " seed " << seed);
      WeightSelector sel(mlp(), make_policy(name, {{"seed", static_cast<double>(seed)}}), {0, 0.25, seed});
      REQUIRE(sel.groups().size() == 3);
      REQUIRE(sel.total_numel() == kTotal);
      REQUIRE(sel.budget_numel() == kTotal / 4);
      Rng env(seed * 1000 + 7);
      const double mean[3] = {0.1, 0.5, 0.9};
      std::set<ArmId> seen;
      int first_all = -1;
      for (int round = 1; round <= 40; ++round) {
        const auto masks = sel.select();
        check_masks(sel, masks);
        CHECK(!sel.selected().empty());
        for (const auto& o : sel.opened()) {
          seen.insert(o.id);
          if (o.id == 0) {  // fc1 alone would be 200960 > 67330
            CHECK(o.partial);
            CHECK(static_cast<int64_t>(o.rows.size()) <= sel.budget_numel() / 785);
            CHECK(masks[0].rows == o.rows);  // its bias opens the same rows
            CHECK(masks[1].rows == o.rows);
          }
        }
        std::map<ArmId, double> rewards;
        for (ArmId id : sel.selected()) rewards[id] = env.uniform() < mean[id] ? 1.0 : 0.0;
        sel.update(rewards);
        if (seen.size() == 3 && first_all < 0) first_all = round;
      }
      CHECK(first_all >= 1);
      CHECK(first_all <= (sel.policy().multiple_play() ? kMultiplePlayBound : kRankingBound));
      CHECK(sel.policy().steps() == 40);  // one round per select, however many groups opened
    }
  }
}

TEST_CASE("weight selector: partial rows by the caller's priority, else in a seeded random order",
          "[bandits][selectors]") {
  // select_in_order: fc1 first, as a non-bandit "importance" strategy would order it.
  WeightSelector sel(mlp(), make_policy("ucb1"), {0, 0.25, 3});
  const int64_t fit = sel.budget_numel() / 785;  // 85 rows of fc1
  std::vector<double> priority(256);
  for (size_t r = 0; r < 256; ++r) priority[r] = -static_cast<double>((r * 37) % 256);  // e.g. -importance
  sel.set_row_priority(1, priority);  // given for the bias alone: it orders fc1's rows
  auto masks = sel.select_in_order({0, 1, 2});
  check_masks(sel, masks);
  REQUIRE(sel.opened().size() >= 1);
  const auto& first = sel.opened()[0];
  CHECK(first.id == 0);
  CHECK(static_cast<int64_t>(first.rows.size()) == fit);
  // The `fit` highest priorities: rows r with (37 r) % 256 < fit.
  std::vector<int64_t> expected;
  for (int64_t r = 0; r < 256; ++r)
    if ((r * 37) % 256 < fit) expected.push_back(r);
  CHECK(first.rows == expected);
  CHECK(masks[0].rows == expected);
  CHECK(masks[1].rows == expected);
  {
    // The leader's priority decides, the bias's breaks its ties: rows 0..127 first (leader
    // priority 0 against -1), among them the highest bias priorities.
    WeightSelector both(mlp(), make_policy("ucb1"), {0, 0.25, 3});
    std::vector<double> tiers(256);
    for (size_t r = 0; r < 256; ++r) tiers[r] = r < 128 ? 0.0 : -1.0;
    both.set_row_priority(0, tiers);
    both.set_row_priority(1, priority);
    both.select_in_order({0});
    std::vector<int64_t> low = range(0, 128);
    std::stable_sort(low.begin(), low.end(), [&](int64_t x, int64_t y) { return priority[x] > priority[y]; });
    low.resize(static_cast<size_t>(fit));
    std::sort(low.begin(), low.end());
    CHECK(both.opened().at(0).rows == low);
  }
  // What is left (67330 - 85 * 785 = 605) takes 2 rows of fc2 (257 each), none of fc3.
  REQUIRE(sel.opened().size() == 2);
  CHECK(sel.opened()[1].id == 1);
  CHECK(sel.opened()[1].rows.size() == 2);
  CHECK(masks[4].selects_none());
  CHECK_THROWS_WITH(sel.update(1.0), Catch::Contains("[weight selector] update() without a select()"));
  CHECK(sel.policy().steps() == 0);  // the policy was not consulted

  // fc3, then fc2: fc3 whole (All masks, compact), fc2 partial (251 rows), fc1 nothing.
  masks = sel.select_in_order({2, 1, 0});
  check_masks(sel, masks);
  CHECK(masks[4].selects_all());
  CHECK(masks[5].selects_all());
  CHECK(masks[2].rows.size() == static_cast<size_t>((sel.budget_numel() - kFc3) / 257));
  CHECK(masks[0].selects_none());
  CHECK(sel.selected() == std::vector<ArmId>{1, 2});
  CHECK_THROWS_WITH(sel.select_in_order({0, 0}), Catch::Contains("listed twice"));
  CHECK_THROWS_WITH(sel.select_in_order({3}), Catch::Contains("no group 3"));
  CHECK_THROWS_WITH(sel.set_row_priority(0, {1.0, 2.0}), Catch::Contains("has 256 rows but 2 priorities"));
  CHECK_THROWS_WITH(sel.set_row_priority(9, {}), Catch::Contains("no parameter 9"));

  // Without a priority: random rows, the same for the same seed, others for another seed.
  auto rows_of = [](uint64_t seed, int rounds) {
    WeightSelector s(mlp(), make_policy("ucb1"), {0, 0.25, seed});
    std::vector<std::vector<int64_t>> out;
    for (int r = 0; r < rounds; ++r) {
      s.select_in_order({0});
      out.push_back(s.opened().at(0).rows);
    }
    return out;
  };
  const auto a = rows_of(5, 3), b = rows_of(5, 3), c = rows_of(6, 3);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a[0] != a[1]);  // a fresh draw each time
  for (const auto& rows : a) {
    CHECK(static_cast<int64_t>(rows.size()) == fit);
    CHECK(std::set<int64_t>(rows.begin(), rows.end()).size() == rows.size());
  }
  // Clearing the priority goes back to random rows.
  sel.set_row_priority(1, {});
  sel.select_in_order({0});
  CHECK(sel.opened()[0].rows != expected);
}

TEST_CASE("weight selector: one reward per opened group, as one round", "[bandits][selectors]") {
  WeightSelector sel(mlp(), make_policy("ucb1"), {0, 0.25, 1});
  sel.select();  // ucb1: all untried, ids in order: fc1 partial, fc2 2 rows
  REQUIRE(sel.selected() == std::vector<ArmId>{0, 1});
  CHECK_THROWS_WITH(sel.update(std::map<ArmId, double>{{0, 0.5}}), Catch::Contains("no reward for group 1"));
  CHECK_THROWS_WITH(sel.update(std::map<ArmId, double>{{0, 0.5}, {1, 0.2}, {2, 0.1}}),
                    Catch::Contains("group 2, which the last select() did not open"));
  sel.update(std::map<ArmId, double>{{0, 0.75}, {1, 0.25}});
  CHECK(sel.policy().steps() == 1);
  CHECK(sel.policy().stats(0).reward_sum == 0.75);
  CHECK(sel.policy().stats(1).reward_sum == 0.25);
  CHECK(sel.policy().stats(2).pulls == 0.0);
  CHECK_THROWS_AS(sel.update(0.5), BanditError);  // one update per select
  sel.select();
  const auto opened = sel.selected();
  sel.update(1.0);  // the same reward to every opened group, still one round
  CHECK(sel.policy().steps() == 2);
  for (ArmId id : opened) CHECK(sel.policy().stats(id).reward_sum >= 1.0);
}

TEST_CASE("weight selector with exp3m: k groups of average size, within budget", "[bandits][selectors]") {
  // 2-row blocks of the MLP: 128 + 128 + 5 groups of unequal sizes (1570, 514, 514 elements).
  WeightSelector sel(mlp(), make_policy("exp3m", {{"seed", 4}}), {2, 0.25, 4});
  const size_t groups = sel.groups().size();
  REQUIRE(groups == 261);
  // average group size kTotal / 261 = 1031.9; floor(67330 / 1031.9) = 65.
  CHECK(sel.multiple_play_k() == 65);
  std::set<ArmId> seen;
  Rng env(2);
  for (int round = 0; round < 200; ++round) {
    const auto masks = sel.select();
    check_masks(sel, masks);
    CHECK(sel.selected().size() <= 65);
    CHECK(sel.selected().size() >= 42);  // 65 chosen; fc1 blocks are 1.5x average
    seen.insert(sel.selected().begin(), sel.selected().end());
    std::map<ArmId, double> rewards;
    for (ArmId id : sel.selected()) rewards[id] = env.uniform();
    sel.update(rewards);
  }
  CHECK(seen.size() == groups);
  CHECK(sel.policy().steps() == 200);
  // Layer granularity: 3 groups, 25 % of the weights is less than one average group: k = 1.
  WeightSelector layers(mlp(), make_policy("exp3m"), {0, 0.25});
  CHECK(layers.multiple_play_k() == 1);
  WeightSelector all(mlp(), make_policy("exp3m"), {0, 1.0});
  CHECK(all.multiple_play_k() == 3);
  all.select();
  CHECK(all.selected_numel() == kTotal);
}

TEST_CASE("weight selector: restoring checks budget, granularity and shapes", "[bandits][selectors]") {
  WeightSelector a({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"v", {6, 2}, ""}}, make_policy("thompson", {{"seed", 2}}),
                   {2, 0.25, 9});
  a.set_row_priority(2, {6, 5, 4, 3, 2, 1});
  for (int r = 0; r < 5; ++r) {
    a.select();
    a.update(0.5);
  }
  a.select();  // pending
  const auto saved = nlohmann::json::parse(a.save_state().dump());
  // The same description restores exactly, pending selection and row priority included.
  WeightSelector b({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"v", {6, 2}, ""}}, make_policy("thompson", {{"seed", 2}}),
                   {2, 0.25, 0});
  b.load_state(saved);
  CHECK(b.save_state() == a.save_state());
  CHECK(b.selected() == a.selected());
  a.update(1.0);
  b.update(1.0);
  for (int r = 0; r < 5; ++r) {
    a.select();
    b.select();
    CHECK(a.selected() == b.selected());
    REQUIRE(a.opened().size() == b.opened().size());
    for (size_t i = 0; i < a.opened().size(); ++i) CHECK(a.opened()[i].rows == b.opened()[i].rows);
    a.update(0.3);
    b.update(0.3);
  }

  auto refuse = [&](std::vector<ParameterInfo> params, WeightSelectorOptions options, const std::string& message) {
    WeightSelector c(std::move(params), make_policy("thompson", {{"seed", 2}}), options);
    const auto before = c.save_state();
    CHECK_THROWS_WITH(c.load_state(saved), Catch::Contains("[weight selector]") && Catch::Contains(message));
    CHECK(c.save_state() == before);
  };
  // Same group count (2 + 3), other budget.
  refuse({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"v", {6, 2}, ""}}, {2, 0.5},
         "saved with budget fraction 0.25 but this selector has 0.5");
  // Same group count, other granularity: blocks of 3 rows of w [4, 3] and v [9, 2] also make
  // 2 + 3 groups (the granularity is checked before the shapes).
  refuse({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"v", {9, 2}, ""}}, {3, 0.25},
         "saved with 2 rows per group but this selector has 3");
  // Same group count and budget, other shapes.
  refuse({{"w", {4, 5}, ""}, {"w.bias", {4}, "w"}, {"v", {6, 2}, ""}}, {2, 0.25},
         "parameter 0 is 'w' [4, 3] in the state but 'w' [4, 5] here");
  refuse({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"u", {6, 2}, ""}}, {2, 0.25}, "parameter 2 is 'v'");
  // A state written before version 2 (no budget, granularity or shapes) is refused clearly.
  auto old = saved;
  old.erase("version");
  WeightSelector d({{"w", {4, 3}, ""}, {"w.bias", {4}, "w"}, {"v", {6, 2}, ""}}, make_policy("thompson", {{"seed", 2}}),
                   {2, 0.25});
  CHECK_THROWS_WITH(d.load_state(old), Catch::Contains("records budget, granularity and shapes"));
}

TEST_CASE("sample selector: mixed batches keep one shape and reward the chosen group", "[bandits][selectors]") {
  SampleSelector sel(make_policy("uniform", {{"seed", 3}}), 5);
  sel.add_group(0, range(0, 2));
  sel.add_group(1, range(100, 110));
  sel.add_group(2, range(200, 230));
  sel.set_mixed_batches(true);
  CHECK(sel.mixed_batches());
  std::map<ArmId, int> from_other[3];
  for (int t = 0; t < 3000; ++t) {
    const auto batch = sel.select(16);
    REQUIRE(batch.indices.size() == 16);
    CHECK(std::set<int64_t>(batch.indices.begin(), batch.indices.end()).size() == 16);
    const auto& pool = sel.group(batch.group);
    CHECK(batch.from_group == std::min<size_t>(16, pool.size()));
    for (size_t i = 0; i < batch.indices.size(); ++i) {
      const int64_t index = batch.indices[i];
      const ArmId owner = index < 100 ? 0 : index < 200 ? 1 : 2;
      if (i < batch.from_group) CHECK(owner == batch.group);  // the chosen group's samples first
      else {
        CHECK(owner != batch.group);
        ++from_other[batch.group][owner];
      }
    }
    const double pulls = sel.policy().stats(batch.group).pulls;
    sel.update(0.5);
    CHECK(sel.policy().stats(batch.group).pulls == pulls + 1.0);  // the reward goes to the chosen group
  }
  // Top-up is uniform over the other groups' samples: when group 0 (2 samples) is chosen,
  // 14 come from 40 samples, 10 of them in group 1.
  const double share = static_cast<double>(from_other[0][1]) / (from_other[0][1] + from_other[0][2]);
  CHECK(share == Approx(10.0 / 40.0).margin(0.02));
  CHECK(from_other[2].empty());  // group 2 (30 samples) fills a batch alone

  // Fewer samples than the batch: all of them.
  SampleSelector small(make_policy("ucb1"), 1);
  small.add_group(4, range(0, 3));
  small.add_group(8, range(10, 15));
  small.set_mixed_batches(true);
  const auto batch = small.select(16);
  CHECK(batch.indices.size() == 8);
  small.update(0.0);
  // Off (the default): the group alone.
  SampleSelector plain(make_policy("ucb1"), 1);
  plain.add_group(4, range(0, 3));
  plain.add_group(8, range(10, 15));
  CHECK(plain.select(16).indices.size() == 3);
  // Saved with the state.
  SampleSelector restored(make_policy("ucb1"), 0);
  restored.load_state(small.save_state());
  CHECK(restored.mixed_batches());
  CHECK(restored.select(16).indices == small.select(16).indices);
}
