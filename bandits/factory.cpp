#include "bandits/factory.h"

#include <cstdlib>
#include <functional>
#include <map>

#include "bandits/discounted_ucb.h"
#include "bandits/epsilon_greedy.h"
#include "bandits/exp3.h"
#include "bandits/exp3m.h"
#include "bandits/kl_ucb.h"
#include "bandits/reward_normalizer.h"
#include "bandits/sliding_window_ucb.h"
#include "bandits/thompson.h"
#include "bandits/ucb1.h"
#include "bandits/uniform.h"

namespace nnr::bandits {

namespace {

using Maker = std::function<std::unique_ptr<Policy>(const PolicyOptions&)>;

const std::map<std::string, Maker>& makers() {
  static const std::map<std::string, Maker> table{
      {"uniform", [](const PolicyOptions& o) { return std::make_unique<UniformPolicy>(o); }},
      {"epsilon-greedy", [](const PolicyOptions& o) { return std::make_unique<EpsilonGreedyPolicy>(o); }},
      {"ucb1", [](const PolicyOptions& o) { return std::make_unique<Ucb1Policy>(o); }},
      {"kl-ucb", [](const PolicyOptions& o) { return std::make_unique<KlUcbPolicy>(o); }},
      {"thompson",
       [](const PolicyOptions& o) { return std::make_unique<ThompsonPolicy>(ThompsonPolicy::Model::Beta, o); }},
      {"thompson-gaussian",
       [](const PolicyOptions& o) {
         return std::make_unique<ThompsonPolicy>(ThompsonPolicy::Model::Gaussian, o);
       }},
      {"exp3", [](const PolicyOptions& o) { return std::make_unique<Exp3Policy>(false, o); }},
      {"exp3s", [](const PolicyOptions& o) { return std::make_unique<Exp3Policy>(true, o); }},
      {"exp3m", [](const PolicyOptions& o) { return std::make_unique<Exp3MPolicy>(o); }},
      {"discounted-ucb", [](const PolicyOptions& o) { return std::make_unique<DiscountedUcbPolicy>(o); }},
      {"sliding-window-ucb",
       [](const PolicyOptions& o) { return std::make_unique<SlidingWindowUcbPolicy>(o); }},
  };
  return table;
}

constexpr const char* kNormPrefix = "norm:";

}  // namespace

std::vector<std::string> policy_names() {
  std::vector<std::string> names;
  for (const auto& kv : makers()) names.push_back(kv.first);
  return names;
}

std::unique_ptr<Policy> make_policy(const std::string& name, const PolicyOptions& options) {
  if (name.rfind(kNormPrefix, 0) == 0) {
    PolicyOptions inner_options;
    for (const auto& kv : options)
      if (!RewardNormalizer::own_defaults().count(kv.first)) inner_options.insert(kv);
    auto inner = make_policy(name.substr(std::string(kNormPrefix).size()), inner_options);
    return std::make_unique<RewardNormalizer>(std::move(inner), options);
  }
  const auto it = makers().find(name);
  if (it == makers().end()) {
    std::string valid;
    for (const auto& n : policy_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw BanditError("[bandits] unknown policy '" + name + "'; valid policies: " + valid +
                      " (prefix any with \"norm:\" to normalise rewards)");
  }
  return it->second(options);
}

std::unique_ptr<Policy> restore_policy(const nlohmann::json& state) {
  std::string name;
  PolicyOptions options;
  try {
    name = state.at("policy").get<std::string>();
    options = state.at("options").get<PolicyOptions>();
  } catch (const nlohmann::json::exception& e) {
    throw BanditError(std::string("[bandits] malformed policy state: ") + e.what());
  }
  auto policy = make_policy(name, options);
  policy->load_state(state);
  return policy;
}

PolicyOptions parse_policy_options(const std::string& text) {
  PolicyOptions options;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw BanditError("[bandits] option '" + item + "' is not of the form key=value");
    const std::string value = item.substr(eq + 1);
    char* parsed_end = nullptr;
    const double number = std::strtod(value.c_str(), &parsed_end);
    if (parsed_end != value.c_str() + value.size())
      throw BanditError("[bandits] option '" + item + "': '" + value + "' is not a number");
    options[item.substr(0, eq)] = number;
    start = end + 1;
  }
  return options;
}

}  // namespace nnr::bandits
