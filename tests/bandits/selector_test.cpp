#include <algorithm>
#include <set>

#include <catch2/catch.hpp>

#include "bandits/factory.h"
#include "bandits/selectors/sample_selector.h"
#include "bandits/selectors/weight_selector.h"

using namespace nnr::bandits;

namespace {

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> v;
  for (int64_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

// A small MLP and a conv layer, described by name and shape only.
std::vector<ParameterInfo> model() {
  return {{"fc1.weight", {16, 8}, ""}, {"fc1.bias", {16}, ""},         {"conv.weight", {6, 3, 3, 3}, ""},
          {"conv.bias", {6}, ""},       {"fc2.weight", {4, 16}, ""},   {"fc2.bias", {4}, ""}};
}

int64_t numel(const nnr::Shape& s) { return nnr::shape_numel(s); }

}  // namespace

TEST_CASE("sample selector draws distinct indices from the chosen group", "[bandits][selectors]") {
  SampleSelector sel(make_policy("ucb1"), 3);
  sel.add_group(0, range(0, 100));
  sel.add_group(5, range(1000, 1010));
  sel.add_group(9, {7});
  std::set<ArmId> seen;
  for (int t = 0; t < 60; ++t) {
    const auto batch = sel.select(16);
    seen.insert(batch.group);
    const auto& pool = sel.group(batch.group);
    CHECK(batch.indices.size() == std::min<size_t>(16, pool.size()));
    CHECK(std::set<int64_t>(batch.indices.begin(), batch.indices.end()).size() == batch.indices.size());
    for (int64_t i : batch.indices) CHECK(std::find(pool.begin(), pool.end(), i) != pool.end());
    sel.update(batch.group == 5 ? 1.0 : 0.0);
  }
  CHECK(seen == std::set<ArmId>{0, 5, 9});
  CHECK(sel.policy().stats(5).pulls > sel.policy().stats(0).pulls);  // the rewarding group wins

  sel.remove_group(5);
  for (int t = 0; t < 20; ++t) {
    CHECK(sel.select(4).group != 5);
    sel.update(0.5);
  }
  sel.add_group(12, range(50, 60));  // a new chunk arrives: tried next
  CHECK(sel.select(4).group == 12);
  CHECK_THROWS_AS(sel.select(0), BanditError);
  sel.update(0.0);
  CHECK_THROWS_WITH(sel.update(0.0), Catch::Contains("[sample selector] update() without a select()"));
  CHECK_THROWS_AS(sel.add_group(3, {}), BanditError);
}

TEST_CASE("sample selector is reproducible and restores exactly", "[bandits][selectors]") {
  auto build = [] {
    auto s = std::make_unique<SampleSelector>(make_policy("thompson", {{"seed", 4}}), 8);
    s->add_group(1, range(0, 500));
    s->add_group(2, range(500, 600));
    return s;
  };
  auto a = build(), b = build();
  for (int t = 0; t < 30; ++t) {
    const auto x = a->select(32), y = b->select(32);
    CHECK(x.group == y.group);
    CHECK(x.indices == y.indices);
    a->update(t % 3 == 0 ? 1.0 : 0.0);
    b->update(t % 3 == 0 ? 1.0 : 0.0);
  }
  auto c = std::make_unique<SampleSelector>(make_policy("thompson", {{"seed", 4}}), 0);
  c->load_state(nlohmann::json::parse(a->save_state().dump()));
  for (int t = 0; t < 30; ++t) {
    const auto x = a->select(32), y = c->select(32);
    CHECK(x.group == y.group);
    CHECK(x.indices == y.indices);
    a->update(0.3);
    c->update(0.3);
  }
  CHECK_THROWS_AS(c->load_state(nlohmann::json{{"format", "nnr.bandits.sample_selector"}}), BanditError);
  // Integers of a saved state must be JSON integers (a float there would be undefined behaviour).
  nlohmann::json bad = a->save_state();
  bad["groups"][0]["indices"][0] = 1e300;
  CHECK_THROWS_WITH(c->load_state(bad), Catch::Contains("group indices is not an integer"));
  bad = a->save_state();
  bad["rng"][1] = 1.5;
  CHECK_THROWS_WITH(c->load_state(bad), Catch::Contains("rng is not an integer"));
  bad["rng"] = {1, 2, 3};
  CHECK_THROWS_WITH(c->load_state(bad), Catch::Contains("generator state must have 4 words"));
}

TEST_CASE("weight selector: rows of Linear and Conv weights, biases follow, budget respected",
          "[bandits][selectors]") {
  const auto params = model();
  for (const std::string policy : {"uniform", "ucb1", "thompson", "exp3s"}) {
    for (double budget : {0.1, 0.25, 0.6, 1.0}) {
      INFO(policy << " budget " << budget);
      WeightSelector sel(params, make_policy(policy, {{"seed", 2}}), {2, budget});
      CHECK(sel.groups().size() == 8 + 3 + 2);  // 2-row blocks of fc1, conv, fc2
      int64_t total = 0;
      for (const auto& p : params) total += numel(p.shape);
      CHECK(sel.total_numel() == total);
      for (int round = 0; round < 10; ++round) {
        const auto masks = sel.select();
        REQUIRE(masks.size() == params.size());
        CHECK(sel.selected_numel() <= sel.budget_numel());
        CHECK(std::set<ArmId>(sel.selected().begin(), sel.selected().end()).size() == sel.selected().size());
        int64_t opened = 0;
        for (size_t i = 0; i < params.size(); ++i) {
          const auto& shape = params[i].shape;
          CHECK_NOTHROW(masks[i].validate(numel(shape), shape[0], params[i].name));
          opened += masks[i].count(numel(shape), shape[0]);
          if (i % 2 == 1) {  // a bias opens exactly its weight's rows
            CHECK(masks[i].kind == masks[i - 1].kind);
            CHECK(masks[i].rows == masks[i - 1].rows);
          }
        }
        CHECK(opened == sel.selected_numel());
        if (budget == 1.0) CHECK(opened == total);
        // Greedy fill: not one row of an unopened group would still fit (a group that does
        // not fit whole is opened partially).
        for (const auto& g : sel.groups())
          if (!std::count(sel.selected().begin(), sel.selected().end(), g.id))
            CHECK(g.row_numel > sel.budget_numel() - sel.selected_numel());
        sel.update(0.5);
      }
    }
  }
}

TEST_CASE("weight selector: whole-parameter groups, reproducibility and state", "[bandits][selectors]") {
  const auto params = model();
  WeightSelector a(params, make_policy("exp3", {{"seed", 6}}), {0, 0.5});
  WeightSelector b(params, make_policy("exp3", {{"seed", 6}}), {0, 0.5});
  CHECK(a.groups().size() == 3);
  for (const auto& g : a.groups()) CHECK(g.whole);
  for (int round = 0; round < 20; ++round) {
    const auto ma = a.select(), mb = b.select();
    CHECK(a.selected() == b.selected());
    CHECK(a.selected_numel() <= a.budget_numel());
    // A parameter is open whole, closed, or (the group that did not fit whole) partly open.
    for (size_t i = 0; i < ma.size(); ++i) {
      const auto& g = a.groups()[i / 2];  // one group per weight, its bias follows
      const auto it = std::find_if(a.opened().begin(), a.opened().end(),
                                   [&](const OpenedGroup& o) { return o.id == g.id; });
      if (it == a.opened().end()) CHECK(ma[i].selects_none());
      else if (!it->partial) CHECK(ma[i].selects_all());
      else CHECK(ma[i].rows == it->rows);
      CHECK(ma[i].kind == mb[i].kind);
      CHECK(ma[i].rows == mb[i].rows);
    }
    a.update(round % 2 ? 1.0 : 0.0);
    b.update(round % 2 ? 1.0 : 0.0);
  }
  WeightSelector c(params, make_policy("exp3", {{"seed", 6}}), {0, 0.5});
  c.load_state(nlohmann::json::parse(a.save_state().dump()));
  for (int round = 0; round < 10; ++round) {
    a.select();
    c.select();
    CHECK(a.selected() == c.selected());
    a.update(0.2);
    c.update(0.2);
  }
  WeightSelector rows(params, make_policy("ucb1"), {1, 0.5});
  CHECK_THROWS_WITH(rows.load_state(a.save_state()), Catch::Contains("[weight selector] state has 3 groups"));
  for (const std::string key : {"groups", "rows_per_group"}) {
    nlohmann::json bad = a.save_state();
    bad[key] = 1e300;
    CHECK_THROWS_WITH(c.load_state(bad), Catch::Contains(key + " is not an integer"));
  }
  nlohmann::json bad = a.save_state();
  bad["parameters"][0]["shape"][0] = 2.5;
  CHECK_THROWS_WITH(c.load_state(bad), Catch::Contains("parameter shape is not an integer"));
}

TEST_CASE("weight selector rejects bad descriptions", "[bandits][selectors]") {
  CHECK_THROWS_AS(WeightSelector({}, make_policy("ucb1")), BanditError);
  CHECK_THROWS_AS(WeightSelector(model(), make_policy("ucb1"), {0, 0.0}), BanditError);
  CHECK_THROWS_WITH(WeightSelector({{"w", {4, 3}, ""}, {"b", {5}, "w"}}, make_policy("ucb1")),
                    Catch::Contains("cannot follow the rows"));
  CHECK_THROWS_AS(WeightSelector({{"w", {4, 0}, ""}}, make_policy("ucb1")), BanditError);
  auto used = make_policy("ucb1");
  used->add_arm(0);
  CHECK_THROWS_WITH(WeightSelector(model(), std::move(used)), Catch::Contains("no arms"));
  // An explicit follower and a lone vector parameter (its own group).
  WeightSelector sel({{"w", {4, 3}, ""}, {"shift", {4}, "w"}, {"scale", {5}, ""}}, make_policy("ucb1"), {1, 1.0});
  CHECK(sel.groups().size() == 4 + 5);
  CHECK(sel.groups()[0].numel == 3 + 1);
}
