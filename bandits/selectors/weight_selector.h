#pragma once
// WeightSelector: which weights a retraining round may change. Each arm is a parameter
// group: a whole parameter, or a block of rows along dim 0 (output neurons of a Linear
// weight [out, in], filters of a Conv weight [out, in, kh, kw]). Given a budget (a fraction
// of all weights), select() ranks every group by the policy and fills the budget in that
// order: a group that fits is opened whole; one that does not is opened partially, as many of
// its rows as fit (by the caller's row priority, or in a seeded random order), so every arm
// can be opened, however large. It returns one nnr::UpdateMask per parameter (All when every
// row of a parameter is open, Rows otherwise). With a multiple-play policy (exp3m) select()
// asks for k arms only, k = the number of groups of average size that fit the budget
// (clamped to [1, groups]), and fills the budget with those k alone. A bias follows its weight's
// rows: "<p>.bias" of shape [out] goes with "<p>.weight" of shape [out, ...] (or name the
// leader in ParameterInfo::rows_follow); its entries count toward the budget.
// Parameters are described by name and shape only, so no model class is needed.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bandits/policy.h"
#include "engine/core/tensor.h"
#include "engine/optim/update_mask.h"

namespace nnr::bandits {

struct ParameterInfo {
  std::string name;
  nnr::Shape shape;
  // Name of the parameter whose rows this one follows (a bias of shape [out]). Empty: follow
  // "<prefix>.weight" automatically when this is a rank-1 "<prefix>.bias" with matching rows.
  std::string rows_follow;
};

struct WeightSelectorOptions {
  int64_t rows_per_group = 0;    // 0: one group per parameter; n: blocks of n rows
  double budget_fraction = 0.25;  // of all elements (followers included), in (0, 1]
  uint64_t seed = 0;              // the selector's generator: random row order of partial groups
};

// One arm: rows [row_begin, row_end) of one parameter plus the same rows of its followers.
struct WeightGroup {
  ArmId id = 0;
  size_t parameter = 0;  // index into the parameter list
  int64_t row_begin = 0;
  int64_t row_end = 0;
  bool whole = false;    // the group is the whole parameter
  int64_t numel = 0;     // elements it opens, followers included
  int64_t row_numel = 0; // elements of one of its rows, followers included
};

// A group opened by the last selection: its rows [row_begin, row_end) of `parameter` (the
// leader; followers open the same rows), and the rows actually opened, increasing (all of
// them unless `partial`). `numel` counts the opened elements, followers included.
struct OpenedGroup {
  ArmId id = 0;
  size_t parameter = 0;
  int64_t row_begin = 0;
  int64_t row_end = 0;
  std::vector<int64_t> rows;
  bool partial = false;
  int64_t numel = 0;
};

class WeightSelector {
 public:
  // Groups get ids 0, 1, ... in parameter order; the policy must have no arms yet.
  WeightSelector(std::vector<ParameterInfo> parameters, std::unique_ptr<Policy> policy,
                 WeightSelectorOptions options = {});

  const std::vector<ParameterInfo>& parameters() const { return parameters_; }
  const std::vector<WeightGroup>& groups() const { return groups_; }
  int64_t total_numel() const { return total_numel_; }
  int64_t budget_numel() const;

  // One mask per parameter (constructor order): the policy's ranking filled into the budget
  // (see above). Never opens more than budget_numel() elements. Expects one update next.
  std::vector<nnr::UpdateMask> select();
  // The same budget fill applied to an order the caller gives (distinct group ids; groups not
  // listed stay closed): for weight strategies without a bandit ("importance", "random").
  // The policy is not consulted and no reward is expected (update() after it throws).
  std::vector<nnr::UpdateMask> select_in_order(const std::vector<ArmId>& order);
  // Ids of the groups the last selection opened, whole or partial, increasing.
  const std::vector<ArmId>& selected() const { return selected_; }
  // The groups the last selection opened, in id order, with the rows actually opened.
  const std::vector<OpenedGroup>& opened() const { return opened_; }
  int64_t selected_numel() const;
  // k for a multiple-play policy: groups of average size (total_numel / groups) that fit the
  // budget, clamped to [1, groups].
  size_t multiple_play_k() const;

  // Row priority of one parameter (by index) for partial opening: one finite value per row
  // (dim 0), higher opened first, e.g. -(mean importance of each row) to open the least
  // important rows first. The leader's priority decides; a follower's (a bias) breaks its ties,
  // or decides alone when the leader has none; then the lower row. With none set for a group's
  // parameter or followers, rows are drawn in a seeded random order. An empty vector clears
  // the parameter's priority. Saved with the state.
  void set_row_priority(size_t parameter, std::vector<double> priority);

  // The round's reward, given to every group opened by the last select() (one round of the
  // policy: update_round).
  void update(double reward);
  // One reward per group opened by the last select() (semi-bandit feedback, e.g. each group's
  // first-order share of the loss drop), keyed by group id: exactly the ids of selected().
  // Delivered as one round (update_round).
  void update(const std::map<ArmId, double>& rewards);

  const Policy& policy() const { return *policy_; }
  // Budget, granularity, parameter names and shapes, the last selection, row priorities,
  // the generator and the policy's state.
  nlohmann::json save_state() const;
  // Refuses (BanditError, nothing changed) a state saved with another number of groups,
  // budget, granularity, or other parameter names, shapes or followers.
  void load_state(const nlohmann::json& state);

 private:
  std::vector<ParameterInfo> parameters_;
  std::unique_ptr<Policy> policy_;
  WeightSelectorOptions options_;
  std::vector<WeightGroup> groups_;
  std::vector<int> leader_of_;  // per parameter: index of the parameter it follows, or -1
  int64_t total_numel_ = 0;
  std::vector<nnr::UpdateMask> fill(const std::vector<ArmId>& order);
  std::vector<int64_t> pick_rows(const WeightGroup& g, int64_t count);
  nlohmann::json describe_parameters() const;

  std::vector<ArmId> selected_;
  std::vector<OpenedGroup> opened_;
  std::map<size_t, std::vector<double>> row_priority_;  // by parameter index
  Rng rng_;
  bool pending_ = false;
};

}  // namespace nnr::bandits
