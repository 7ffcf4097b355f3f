#pragma once
// Policy: the one interface every bandit policy implements. A policy chooses among live
// arms, identified by stable integer ids that keep their meaning across retraining rounds
// (a data chunk, a layer block). Arms may be added (they start optimistic: an arm with no
// reward yet is chosen before any arm with one, except under `uniform` and `exp3*`, which give
// it the largest current weight) and retired (never chosen again).
//
// Time is rounds: the clock (UCB's log t, the sliding window, D-UCB's discount, EXP3's
// weight update, epsilon-greedy's decay) advances once per play. After select(), report with
// update(arm, reward) (one play, one reward); after select_k(k), report the rewards of the
// arms actually used in one update_round() call (one play, one tick). Calling update() once
// per arm after select_k would count k rounds.
// All randomness comes from the policy's own seeded nnr::Rng ("seed" option), and the whole
// state (options, arms, statistics, generator) round-trips through save_state/load_state.
//
// Subclasses implement choose/observe and, if they keep more than ArmStats, the extra state.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/rng.h"

namespace nnr::bandits {

using ArmId = int64_t;
// Numeric options by name, e.g. {{"c", 2.0}, {"seed", 7}}. Each policy lists its own keys.
using PolicyOptions = std::map<std::string, double>;

// Every error from bandits/ is this type; messages start with "[bandits]" or "[<policy>]". It is
// a usage error (exit 2): a bad policy name or option, a reward the chosen policy cannot take, or
// a state that does not fit; callers that read a state from disk rethrow it as nnr::Error.
class BanditError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// An integer of a saved state (T an integer type, or std::vector of one). nlohmann's get<T>() of a
// floating-point value outside T's range is undefined behaviour, so a saved state must hold JSON
// integers there: anything else is refused with BanditError naming `what`.
template <typename T>
T state_integer(const nlohmann::json& value, const std::string& what) {
  if constexpr (std::is_integral_v<T>) {
    if (!value.is_number_integer())
      throw BanditError("[bandits] malformed state: " + what + " is not an integer but " + value.type_name());
  } else {
    if (!value.is_array()) throw BanditError("[bandits] malformed state: " + what + " is not an array");
    for (const auto& v : value) state_integer<typename T::value_type>(v, what);
  }
  return value.get<T>();
}

// A generator as a saved state holds it (four JSON integers), and back; state_rng_words refuses
// anything else with BanditError.
nlohmann::json rng_state(const Rng& rng);
std::array<uint64_t, 4> state_rng_words(const nlohmann::json& value);

// Statistics a policy keeps per arm. `pulls` and `reward_sum` may be discounted or windowed;
// `aux` holds a policy-specific number (log-weight, last selection probability, ...).
struct ArmStats {
  double pulls = 0.0;
  double reward_sum = 0.0;
  double reward_sq_sum = 0.0;
  double weight = 0.0;
  double aux = 0.0;
  double mean() const { return pulls > 0.0 ? reward_sum / pulls : 0.0; }
};

class Policy {
 public:
  virtual ~Policy() = default;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // Factory name of this policy ("ucb1", "norm:thompson", ...).
  virtual std::string name() const { return name_; }
  // All options with their defaults filled in (what make_policy needs to rebuild it).
  const PolicyOptions& options() const { return options_; }

  // One live arm. Throws if there is none.
  ArmId select();
  // k distinct live arms, most preferred first. Throws unless 0 <= k <= live arm count.
  std::vector<ArmId> select_k(size_t k);
  // The reward for one pull of a live arm: one play, one clock tick. Same as
  // update_round({{arm, reward}}).
  void update(ArmId arm, double reward);
  // The rewards of one play (e.g. the arms of one select_k that were used): each a live arm
  // at most once, every reward valid for the policy; the clock advances once (also for an
  // empty list: a round in which nothing was opened). Validated before anything changes.
  void update_round(const std::vector<std::pair<ArmId, double>>& rewards);
  // True for a multiple-play policy (exp3m): select_k(k) draws a set of k arms with
  // calibrated marginal probabilities, so callers must ask for exactly the number of arms
  // they will use (not a full ranking) and reward only those.
  virtual bool multiple_play() const { return false; }

  // A new arm (id must not be live). It starts optimistic (see above).
  virtual void add_arm(ArmId arm);
  // Remove an arm from every future choice; its statistics are dropped.
  virtual void retire_arm(ArmId arm);
  const std::vector<ArmId>& arms() const { return arms_; }  // live ids, increasing
  bool has_arm(ArmId arm) const;
  // Statistics of a live arm (read-only; for reports and tests).
  const ArmStats& stats(ArmId arm) const;
  // Rounds played so far (update / update_round calls): the policy's clock.
  int64_t steps() const { return steps_; }

  // The whole state as JSON; load_state restores it exactly. load_state throws BanditError
  // if the state is malformed, was saved by another policy, or with other options (build
  // the policy with restore_policy(state) to take the saved options).
  virtual nlohmann::json save_state() const;
  virtual void load_state(const nlohmann::json& state);

 protected:
  // `defaults` lists every valid option; `given` may override any of them, and an unknown
  // key is an error that lists the valid ones.
  Policy(std::string name, const PolicyOptions& given, const PolicyOptions& defaults);

  double option(const std::string& key) const { return options_.at(key); }
  // Throws unless reward is finite and in [0, 1] (policies whose guarantees need it).
  void require_unit_reward(double reward) const;
  // True if every reward must be in [0, 1]; update_round checks them all before any is used.
  virtual bool unit_rewards() const { return false; }

  // k distinct live arms (1 <= k <= arms().size()), most preferred first.
  virtual std::vector<ArmId> choose(size_t k) = 0;
  // Fold one reward into the statistics. steps() counts its round already.
  virtual void observe(ArmId arm, double reward) = 0;
  // Fold the (validated) rewards of one round; steps() counts the round already. Default:
  // observe() each in order. Policies with a clock of their own (discounting, a window,
  // EXP3's weight update) override it so the round counts once.
  virtual void observe_round(const std::vector<std::pair<ArmId, double>>& rewards);
  // Statistics for a newly added arm (default: all zero).
  virtual ArmStats initial_stats(ArmId arm) const;
  virtual void on_retire(ArmId /*arm*/) {}
  // Policy-specific state beyond ArmStats (default: none).
  virtual nlohmann::json save_extra() const { return nlohmann::json::object(); }
  virtual void load_extra(const nlohmann::json& /*extra*/) {}

  // Helpers for subclasses.
  // The k arms with the highest scores; ties go to the lower id, so index policies are
  // deterministic. Scores may be +infinity (an arm not yet pulled).
  std::vector<ArmId> top_k(size_t k, const std::vector<double>& scores) const;
  // k distinct arms drawn one by one with probability proportional to `weights`
  // (renormalised over the arms not yet drawn).
  std::vector<ArmId> draw_k(size_t k, std::vector<double> weights);
  [[noreturn]] void fail(const std::string& message) const;

  Rng rng_;
  std::map<ArmId, ArmStats> stats_;

 private:
  std::string name_;
  PolicyOptions options_;
  std::vector<ArmId> arms_;
  int64_t steps_ = 0;
};

}  // namespace nnr::bandits
