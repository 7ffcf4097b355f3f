#include "bandits/selectors/weight_selector.h"

#include <algorithm>
#include <cmath>
#include <utility>

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
    : parameters_(std::move(parameters)), policy_(std::move(policy)), options_(options), rng_(options.seed) {
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
      g.row_numel = row_elems;
      groups_.push_back(g);
      policy_->add_arm(g.id);
    }
  }
}

int64_t WeightSelector::budget_numel() const {
  return static_cast<int64_t>(std::floor(options_.budget_fraction * static_cast<double>(total_numel_)));
}

size_t WeightSelector::multiple_play_k() const {
  const double average = static_cast<double>(total_numel_) / static_cast<double>(groups_.size());
  const double fit = std::floor(static_cast<double>(budget_numel()) / average);
  return static_cast<size_t>(std::min(static_cast<double>(groups_.size()), std::max(1.0, fit)));
}

std::vector<nnr::UpdateMask> WeightSelector::select() {
  const std::vector<ArmId> order = policy_->multiple_play() ? policy_->select_k(multiple_play_k())
                                                            : policy_->select_k(policy_->arms().size());
  auto masks = fill(order);
  pending_ = true;
  return masks;
}

std::vector<nnr::UpdateMask> WeightSelector::select_in_order(const std::vector<ArmId>& order) {
  std::vector<bool> seen(groups_.size(), false);
  for (ArmId id : order) {
    if (id < 0 || id >= static_cast<ArmId>(groups_.size()))
      fail("select_in_order: no group " + std::to_string(id) + " (there are " + std::to_string(groups_.size()) + ")");
    if (seen[static_cast<size_t>(id)]) fail("select_in_order: group " + std::to_string(id) + " is listed twice");
    seen[static_cast<size_t>(id)] = true;
  }
  auto masks = fill(order);
  pending_ = false;
  return masks;
}

std::vector<int64_t> WeightSelector::pick_rows(const WeightGroup& g, int64_t count) {
  std::vector<int64_t> rows;
  for (int64_t r = g.row_begin; r < g.row_end; ++r) rows.push_back(r);
  // Priorities of the leader, then of its followers (tie-breakers), where set.
  std::vector<const std::vector<double>*> keys;
  for (const auto& [parameter, values] : row_priority_)
    if (parameter == g.parameter) keys.insert(keys.begin(), &values);
    else if (leader_of_[parameter] == static_cast<int>(g.parameter)) keys.push_back(&values);
  if (!keys.empty()) {
    std::stable_sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
      for (const auto* k : keys) {
        const double pa = (*k)[static_cast<size_t>(a)], pb = (*k)[static_cast<size_t>(b)];
        if (pa != pb) return pa > pb;
      }
      return false;  // stable: the lower row first
    });
  } else {
    for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates: the first `count` of a shuffle
      const int64_t j = i + static_cast<int64_t>(rng_.below(static_cast<uint64_t>(rows.size()) - static_cast<uint64_t>(i)));
      std::swap(rows[static_cast<size_t>(i)], rows[static_cast<size_t>(j)]);
    }
  }
  rows.resize(static_cast<size_t>(count));
  std::sort(rows.begin(), rows.end());
  return rows;
}

std::vector<nnr::UpdateMask> WeightSelector::fill(const std::vector<ArmId>& order) {
  int64_t left = budget_numel();
  std::vector<OpenedGroup> opened;
  for (ArmId id : order) {
    const WeightGroup& g = groups_[static_cast<size_t>(id)];
    const int64_t rows = g.row_end - g.row_begin;
    const int64_t fit = std::min(rows, left / g.row_numel);
    if (fit <= 0) continue;  // not one row fits; a group of smaller rows further down may
    OpenedGroup o;
    o.id = g.id;
    o.parameter = g.parameter;
    o.row_begin = g.row_begin;
    o.row_end = g.row_end;
    o.partial = fit < rows;
    o.numel = fit * g.row_numel;
    if (o.partial) {
      o.rows = pick_rows(g, fit);
    } else {
      for (int64_t r = g.row_begin; r < g.row_end; ++r) o.rows.push_back(r);
    }
    left -= o.numel;
    opened.push_back(std::move(o));
  }
  std::sort(opened.begin(), opened.end(), [](const OpenedGroup& a, const OpenedGroup& b) { return a.id < b.id; });
  opened_ = std::move(opened);
  selected_.clear();
  for (const auto& o : opened_) selected_.push_back(o.id);

  std::vector<std::vector<int64_t>> rows(parameters_.size());
  for (const auto& o : opened_) rows[o.parameter].insert(rows[o.parameter].end(), o.rows.begin(), o.rows.end());
  std::vector<nnr::UpdateMask> masks(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const size_t owner = leader_of_[i] >= 0 ? static_cast<size_t>(leader_of_[i]) : i;
    if (static_cast<int64_t>(rows[owner].size()) == rows_of(parameters_[owner].shape))
      masks[i] = nnr::UpdateMask::all();
    else
      masks[i] = nnr::UpdateMask::of_rows(rows[owner]);
  }
  return masks;
}

int64_t WeightSelector::selected_numel() const {
  int64_t n = 0;
  for (const auto& o : opened_) n += o.numel;
  return n;
}

void WeightSelector::set_row_priority(size_t parameter, std::vector<double> priority) {
  if (parameter >= parameters_.size())
    fail("set_row_priority: no parameter " + std::to_string(parameter) + " (there are " +
         std::to_string(parameters_.size()) + ")");
  if (priority.empty()) {
    row_priority_.erase(parameter);
    return;
  }
  const int64_t rows = rows_of(parameters_[parameter].shape);
  if (static_cast<int64_t>(priority.size()) != rows)
    fail("set_row_priority: '" + parameters_[parameter].name + "' has " + std::to_string(rows) + " rows but " +
         std::to_string(priority.size()) + " priorities were given");
  for (double v : priority)
    if (!std::isfinite(v)) fail("set_row_priority: a priority for '" + parameters_[parameter].name + "' is not finite");
  row_priority_[parameter] = std::move(priority);
}

void WeightSelector::update(double reward) {
  if (!pending_) fail("update() without a select() before it");
  std::vector<std::pair<ArmId, double>> rewards;
  for (ArmId id : selected_) rewards.emplace_back(id, reward);
  policy_->update_round(rewards);
  pending_ = false;
}

void WeightSelector::update(const std::map<ArmId, double>& rewards) {
  if (!pending_) fail("update() without a select() before it");
  for (ArmId id : selected_)
    if (!rewards.count(id)) fail("no reward for group " + std::to_string(id) + ", which the last select() opened");
  for (const auto& kv : rewards)
    if (!std::binary_search(selected_.begin(), selected_.end(), kv.first))
      fail("reward for group " + std::to_string(kv.first) + ", which the last select() did not open");
  policy_->update_round(std::vector<std::pair<ArmId, double>>(rewards.begin(), rewards.end()));
  pending_ = false;
}

nlohmann::json WeightSelector::describe_parameters() const {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < parameters_.size(); ++i)
    out.push_back({{"name", parameters_[i].name},
                   {"shape", parameters_[i].shape},
                   {"follows", leader_of_[i] >= 0 ? parameters_[static_cast<size_t>(leader_of_[i])].name : ""}});
  return out;
}

namespace {
constexpr const char* kStateFormat = "nnr.bandits.weight_selector";
constexpr int kStateVersion = 2;

std::string describe(const nlohmann::json& p) {
  std::string follows = p.at("follows").get<std::string>();
  return "'" + p.at("name").get<std::string>() + "' " + nnr::shape_to_string(state_integer<nnr::Shape>(p.at("shape"), "parameter shape")) +
         (follows.empty() ? "" : " (rows follow '" + follows + "')");
}
}  // namespace

nlohmann::json WeightSelector::save_state() const {
  nlohmann::json opened = nlohmann::json::array();
  for (const auto& o : opened_) opened.push_back({o.id, o.rows});
  nlohmann::json priority = nlohmann::json::array();
  for (const auto& [parameter, values] : row_priority_) priority.push_back({parameter, values});
  return {{"format", kStateFormat},
          {"version", kStateVersion},
          {"groups", groups_.size()},
          {"budget_fraction", options_.budget_fraction},
          {"rows_per_group", options_.rows_per_group},
          {"parameters", describe_parameters()},
          {"opened", opened},
          {"pending", pending_},
          {"row_priority", priority},
          {"rng", rng_state(rng_)},
          {"policy", policy_->save_state()}};
}

void WeightSelector::load_state(const nlohmann::json& state) {
  try {
    if (!state.is_object() || state.value("format", "") != kStateFormat) fail("not a weight selector state");
    if (state_integer<size_t>(state.at("groups"), "groups") != groups_.size())
      fail("state has " + state.at("groups").dump() + " groups but these parameters make " +
           std::to_string(groups_.size()));
    if (!state.contains("version") || state_integer<int>(state.at("version"), "version") != kStateVersion)
      fail("state version " + (state.contains("version") ? state.at("version").dump() : std::string("1")) +
           " is not supported (expected " + std::to_string(kStateVersion) +
           ", which records budget, granularity and shapes)");
    const double budget = state.at("budget_fraction").get<double>();
    if (budget != options_.budget_fraction)
      fail("state was saved with budget fraction " + nlohmann::json(budget).dump() + " but this selector has " +
           nlohmann::json(options_.budget_fraction).dump());
    const int64_t rows_per_group = state_integer<int64_t>(state.at("rows_per_group"), "rows_per_group");
    if (rows_per_group != options_.rows_per_group)
      fail("state was saved with " + std::to_string(rows_per_group) + " rows per group but this selector has " +
           std::to_string(options_.rows_per_group) + " (0: one group per parameter)");
    const nlohmann::json here = describe_parameters();
    const auto& saved = state.at("parameters");
    if (saved.size() != here.size())
      fail("state has " + std::to_string(saved.size()) + " parameters but this selector has " +
           std::to_string(here.size()));
    for (size_t i = 0; i < here.size(); ++i)
      if (describe(saved.at(i)) != describe(here[i]))
        fail("parameter " + std::to_string(i) + " is " + describe(saved.at(i)) + " in the state but " +
             describe(here[i]) + " here");

    std::vector<OpenedGroup> opened;
    std::vector<ArmId> selected;
    for (const auto& e : state.at("opened")) {
      const ArmId id = state_integer<ArmId>(e.at(0), "opened group id");
      if (id < 0 || id >= static_cast<ArmId>(groups_.size())) fail("saved selection names no group");
      if (!selected.empty() && id <= selected.back()) fail("saved selection is not in increasing id order");
      const WeightGroup& g = groups_[static_cast<size_t>(id)];
      OpenedGroup o;
      o.id = id;
      o.parameter = g.parameter;
      o.row_begin = g.row_begin;
      o.row_end = g.row_end;
      o.rows = state_integer<std::vector<int64_t>>(e.at(1), "opened rows");
      if (o.rows.empty() || !std::is_sorted(o.rows.begin(), o.rows.end()) ||
          std::adjacent_find(o.rows.begin(), o.rows.end()) != o.rows.end() || o.rows.front() < g.row_begin ||
          o.rows.back() >= g.row_end)
        fail("saved rows of group " + std::to_string(id) + " are not increasing rows of the group");
      o.partial = static_cast<int64_t>(o.rows.size()) < g.row_end - g.row_begin;
      o.numel = static_cast<int64_t>(o.rows.size()) * g.row_numel;
      selected.push_back(id);
      opened.push_back(std::move(o));
    }
    const bool pending = state.at("pending").get<bool>();
    std::map<size_t, std::vector<double>> priority;
    for (const auto& e : state.at("row_priority")) {
      const size_t parameter = state_integer<size_t>(e.at(0), "row priority parameter");
      auto values = e.at(1).get<std::vector<double>>();
      if (parameter >= parameters_.size() || static_cast<int64_t>(values.size()) != rows_of(parameters_[parameter].shape))
        fail("saved row priority does not fit parameter " + std::to_string(parameter));
      priority[parameter] = std::move(values);
    }
    const auto words = state_rng_words(state.at("rng"));
    policy_->load_state(state.at("policy"));
    opened_ = std::move(opened);
    selected_ = std::move(selected);
    pending_ = pending;
    row_priority_ = std::move(priority);
    rng_.set_words(words);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("malformed state: ") + e.what());
  }
}

}  // namespace nnr::bandits
