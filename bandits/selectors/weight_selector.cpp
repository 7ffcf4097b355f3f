#include "bandits/selectors/weight_selector.h"

#include <algorithm>
#include <cmath>

namespace nnr::bandits {

namespace {

[[noreturn]] void fail(const std::string& message) { throw BanditError("[weight selector] " + message); }

int64_t rows_of(const nnr::Shape& shape) { return shape.empty() ? 1 : shape[0]; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

WeightSelector::WeightSelector(std::vector<ParameterInfo> parameters, std::unique_ptr<Policy> policy,
                               WeightSelectorOptions options)
    : parameters_(std::move(parameters)), policy_(std::move(policy)), options_(options) {
  if (!policy_) fail("needs a policy");
  if (!policy_->arms().empty()) fail("the policy must start with no arms; the selector adds one per group");
  if (!(options_.budget_fraction > 0.0 && options_.budget_fraction <= 1.0))
    fail("budget fraction must be in (0, 1], got " + std::to_string(options_.budget_fraction));
  if (options_.rows_per_group < 0) fail("rows per group must be >= 0");
  if (parameters_.empty()) fail("no parameters");

  auto find = [&](const std::string& name) {
    for (size_t i = 0; i < parameters_.size(); ++i)
      if (parameters_[i].name == name) return static_cast<int>(i);
    return -1;
  };
  leader_of_.assign(parameters_.size(), -1);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const ParameterInfo& p = parameters_[i];
    for (int64_t d : p.shape)
      if (d <= 0) fail("parameter '" + p.name + "' has shape " + nnr::shape_to_string(p.shape));
    if (find(p.name) != static_cast<int>(i)) fail("parameter name '" + p.name + "' appears twice");
    total_numel_ += nnr::shape_numel(p.shape);
    int leader = -1;
    if (!p.rows_follow.empty()) {
      leader = find(p.rows_follow);
      if (leader < 0) fail("'" + p.name + "' follows '" + p.rows_follow + "', which is not a parameter");
    } else if (p.shape.size() == 1 && ends_with(p.name, "bias")) {
      leader = find(p.name.substr(0, p.name.size() - 4) + "weight");
      if (leader >= 0 && parameters_[leader].shape.size() < 2) leader = -1;
    }
    if (leader >= 0) {
      const ParameterInfo& l = parameters_[static_cast<size_t>(leader)];
      if (static_cast<size_t>(leader) == i || !l.rows_follow.empty() || rows_of(l.shape) != rows_of(p.shape))
        fail("'" + p.name + "' " + nnr::shape_to_string(p.shape) + " cannot follow the rows of '" + l.name + "' " +
             nnr::shape_to_string(l.shape));
      leader_of_[i] = leader;
    }
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (leader_of_[i] >= 0) continue;
    const ParameterInfo& p = parameters_[i];
    const int64_t rows = rows_of(p.shape);
    int64_t row_elems = nnr::shape_numel(p.shape) / rows;
    for (size_t f = 0; f < parameters_.size(); ++f)
      if (leader_of_[f] == static_cast<int>(i)) row_elems += nnr::shape_numel(parameters_[f].shape) / rows;
    const int64_t block = options_.rows_per_group == 0 ? rows : options_.rows_per_group;
    for (int64_t begin = 0; begin < rows; begin += block) {
      WeightGroup g;
      g.id = static_cast<ArmId>(groups_.size());
      g.parameter = i;
      g.row_begin = begin;
      g.row_end = std::min(rows, begin + block);
      g.whole = g.row_begin == 0 && g.row_end == rows;
      g.numel = (g.row_end - g.row_begin) * row_elems;
      groups_.push_back(g);
      policy_->add_arm(g.id);
    }
  }
}

int64_t WeightSelector::budget_numel() const {
  return static_cast<int64_t>(std::floor(options_.budget_fraction * static_cast<double>(total_numel_)));
}

std::vector<nnr::UpdateMask> WeightSelector::select() {
  const std::vector<ArmId> ranked = policy_->select_k(policy_->arms().size());
  int64_t left = budget_numel();
  selected_.clear();
  for (ArmId id : ranked) {
    const WeightGroup& g = groups_[static_cast<size_t>(id)];
    if (g.numel > left) continue;  // a smaller group further down may still fit
    left -= g.numel;
    selected_.push_back(id);
  }
  std::sort(selected_.begin(), selected_.end());
  pending_ = true;

  std::vector<std::vector<int64_t>> rows(parameters_.size());
  std::vector<bool> whole(parameters_.size(), false);
  for (ArmId id : selected_) {
    const WeightGroup& g = groups_[static_cast<size_t>(id)];
    if (g.whole) whole[g.parameter] = true;
    for (int64_t r = g.row_begin; r < g.row_end; ++r) rows[g.parameter].push_back(r);
  }
  std::vector<nnr::UpdateMask> masks(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const size_t owner = leader_of_[i] >= 0 ? static_cast<size_t>(leader_of_[i]) : i;
    if (whole[owner] || static_cast<int64_t>(rows[owner].size()) == rows_of(parameters_[owner].shape))
      masks[i] = nnr::UpdateMask::all();
    else
      masks[i] = nnr::UpdateMask::of_rows(rows[owner]);
  }
  return masks;
}

int64_t WeightSelector::selected_numel() const {
  int64_t n = 0;
  for (ArmId id : selected_) n += groups_[static_cast<size_t>(id)].numel;
  return n;
}

void WeightSelector::update(double reward) {
  if (!pending_) fail("update() without a select() before it");
  for (ArmId id : selected_) policy_->update(id, reward);
  pending_ = false;
}

nlohmann::json WeightSelector::save_state() const {
  return {{"format", "nnr.bandits.weight_selector"},
          {"groups", groups_.size()},
          {"selected", selected_},
          {"pending", pending_},
          {"policy", policy_->save_state()}};
}

void WeightSelector::load_state(const nlohmann::json& state) {
  try {
    if (!state.is_object() || state.value("format", "") != "nnr.bandits.weight_selector")
      fail("not a weight selector state");
    if (state.at("groups").get<size_t>() != groups_.size())
      fail("state has " + state.at("groups").dump() + " groups but these parameters make " +
           std::to_string(groups_.size()));
    auto selected = state.at("selected").get<std::vector<ArmId>>();
    for (ArmId id : selected)
      if (id < 0 || id >= static_cast<ArmId>(groups_.size())) fail("saved selection names no group");
    const bool pending = state.at("pending").get<bool>();
    policy_->load_state(state.at("policy"));
    selected_ = std::move(selected);
    pending_ = pending;
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("malformed state: ") + e.what());
  }
}

}  // namespace nnr::bandits
