#pragma once
// WeightSelector: which weights a retraining round may change. Each arm is a parameter
// group: a whole parameter, or a block of rows along dim 0 (output neurons of a Linear
// weight [out, in], filters of a Conv weight [out, in, kh, kw]). Given a budget (a fraction
// of all weights), select() ranks every group by the policy and opens groups in that order
// while they fit, and returns one nnr::UpdateMask per parameter. A bias follows its weight's
// rows: "<p>.bias" of shape [out] goes with "<p>.weight" of shape [out, ...] (or name the
// leader in ParameterInfo::rows_follow); its entries count toward the budget.
// Parameters are described by name and shape only, so no model class is needed.
#include <cstdint>
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
};

// One arm: rows [row_begin, row_end) of one parameter plus the same rows of its followers.
struct WeightGroup {
  ArmId id = 0;
  size_t parameter = 0;  // index into the parameter list
  int64_t row_begin = 0;
  int64_t row_end = 0;
  bool whole = false;    // the group is the whole parameter
  int64_t numel = 0;     // elements it opens, followers included
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

  // One mask per parameter (constructor order). Never opens more than budget_numel() elements.
  std::vector<nnr::UpdateMask> select();
  const std::vector<ArmId>& selected() const { return selected_; }
  int64_t selected_numel() const;
  // The round's reward, given to every group opened by the last select().
  void update(double reward);

  const Policy& policy() const { return *policy_; }
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state);

 private:
  std::vector<ParameterInfo> parameters_;
  std::unique_ptr<Policy> policy_;
  WeightSelectorOptions options_;
  std::vector<WeightGroup> groups_;
  std::vector<int> leader_of_;  // per parameter: index of the parameter it follows, or -1
  int64_t total_numel_ = 0;
  std::vector<ArmId> selected_;
  bool pending_ = false;
};

}  // namespace nnr::bandits
