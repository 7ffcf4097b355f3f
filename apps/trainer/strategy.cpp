#include "apps/trainer/strategy.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "bandits/factory.h"
#include "engine/core/error.h"
#include "regularizers/regularizer.h"

namespace nnr {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string after_bandit(const std::string& choice) {
  return choice.rfind("bandit:", 0) == 0 ? choice.substr(7) : std::string();
}

void validate_policy(const std::string& what, const std::string& policy) {
  if (policy.empty()) throw InvalidArgument("[strategy] " + what + " bandit needs a policy, e.g. bandit:exp3s");
  try {
    bandits::make_policy(policy);
  } catch (const bandits::BanditError& e) {
    throw InvalidArgument("[strategy] " + what + " policy '" + policy + "': " + e.what());
  }
}

}  // namespace

std::string Strategy::description() const {
  std::string out = "samples=" + samples + " weights=" + weights + " regularizer=" + regularizer;
  if (lambda >= 0.0f) {
    std::ostringstream strength;
    strength << lambda;
    out += " lambda=" + strength.str();
  }
  if (distill > 0.0f) {
    std::ostringstream weight;
    weight << distill;
    out += " distill=" + weight.str();
  }
  if (prior_correction) out += " prior-correction";
  return out;
}
std::string Strategy::sample_policy() const { return after_bandit(samples); }
std::string Strategy::weight_policy() const { return after_bandit(weights); }

void Strategy::override_regularizer(const std::string& name) {
  if (name == regularizer) return;
  regularizer = name;
  lambda = -1.0f;
}

const std::vector<std::string>& strategy_presets() {
  static const std::vector<std::string> names{"finetune", "full", "replay", "ewc", "si", "mas", "paper", "bandit-ewc", "bandit-der"};
  return names;
}

Strategy strategy_preset(const std::string& name) {
  Strategy s;
  s.name = name;
  if (name == "finetune") return s;
  if (name == "full") {
    s.samples = "all";
    return s;
  }
  if (name == "replay") {
    s.samples = "replay";
    return s;
  }
  if (name == "ewc" || name == "si" || name == "mas") {
    s.regularizer = name == "ewc" ? "online-ewc" : name;
    return s;
  }
  if (name == "paper") {
    // Learning progress is non-stationary by construction (what is worth replaying changes as the
    // model learns): EXP3.S for the samples. Weight groups are a k-of-n choice: Exp3.M with
    // per-group rewards. Both wrapped in the normaliser because loss drops have no fixed scale.
    s.samples = "bandit:norm:exp3s";
    s.weights = "bandit:norm:exp3m";
    s.regularizer = "sni";
    return s;
  }
  if (name == "bandit-ewc") {
    // The paper's two bandits with online EWC as the penalty: on validation data (the paper preset
    // with one setting changed at a time, 3 seeds, bench/stream_sweep.py) online EWC gained 1.5 to
    // 3 points over SNI on split and permuted Fashion-MNIST, more than any other single change.
    s.samples = "bandit:norm:exp3s";
    s.weights = "bandit:norm:exp3m";
    s.regularizer = "online-ewc";
    return s;
  }
  if (name == "bandit-der") {
    // bandit-ewc whose replayed samples also keep the logits they were stored with (dark experience
    // replay, the trained classes only): on validation data (3 seeds; apps/trainer/README.md) a
    // weight of 0.1 gained 0.9 to 1.5 points over bandit-ewc on split, permuted and drift
    // Fashion-MNIST; 1 and above forget or diverge.
    // With the prior correction after rounds that bring new classes: on validation data (3 seeds,
    // bench/results/stream-sweep-prior-cpu.json) +0.9 points on split, unchanged on permuted (no
    // round brings a class) and drift (-0.1, within the noise).
    // Online EWC at λ 30, a tenth of its default: with the stored logits and the replay holding the
    // old chunks, the default's penalty mostly costs plasticity. On validation data (5 seeds,
    // bench/results/stream-sweep-lambda-cpu.json) +0.3 points on split, +0.7 on permuted, +1.3 on drift.
    s = strategy_preset("bandit-ewc");
    s.name = name;
    s.distill = 0.1f;
    s.prior_correction = true;
    s.lambda = 30.0f;
    return s;
  }
  throw InvalidArgument("[strategy] unknown strategy '" + name + "' (presets: " + joined(strategy_presets()) + ")");
}

void validate_strategy(const Strategy& s) {
  static const std::vector<std::string> samples{"new", "all", "replay"};
  static const std::vector<std::string> weights{"all", "random", "importance"};
  if (s.samples_from_bandit()) validate_policy("samples", s.sample_policy());
  else if (std::find(samples.begin(), samples.end(), s.samples) == samples.end())
    throw InvalidArgument("[strategy] unknown samples choice '" + s.samples + "' (valid: " + joined(samples) +
                          ", bandit:<policy>)");
  if (s.weights_from_bandit()) validate_policy("weights", s.weight_policy());
  else if (std::find(weights.begin(), weights.end(), s.weights) == weights.end())
    throw InvalidArgument("[strategy] unknown weights choice '" + s.weights + "' (valid: " + joined(weights) +
                          ", bandit:<policy>)");
  if (!std::isfinite(s.lambda))
    throw InvalidArgument("[strategy] the preset's lambda must be a finite number, got " + std::to_string(s.lambda));
  if (!(s.distill >= 0.0f && std::isfinite(s.distill)))
    throw InvalidArgument("[strategy] the distill weight must be a finite number >= 0, got " + std::to_string(s.distill));
  if (s.distill > 0.0f && s.samples != "replay" && !s.samples_from_bandit())
    throw InvalidArgument("[strategy] distill needs replayed samples (samples replay or bandit:<policy>), not samples " +
                          s.samples);
  if (s.regularizer != "none") {
    const auto& names = regularizer_names();
    if (std::find(names.begin(), names.end(), s.regularizer) == names.end())
      throw InvalidArgument("[strategy] unknown regularizer '" + s.regularizer + "' (valid: none, " + joined(names) +
                            ")");
  }
}

}  // namespace nnr
