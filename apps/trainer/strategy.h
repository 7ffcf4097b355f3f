#pragma once
// A retraining strategy: three independent choices, each a flag of `nnr stream`, plus presets.
//   samples      new               the new chunk only (fine-tuning)
//                all               everything seen so far, every round (full retraining, warm-started)
//                replay            each step: a batch of the new chunk + a batch drawn uniformly from the
//                                  replay memory (Avalanche's ReplayPlugin with batch_size_mem = batch_size)
//                bandit:<policy>   arms = the memory's groups + the new chunk; each step's batch is
//                                  (1 − replay_fraction) new samples + replay_fraction from the arm the
//                                  policy pulled; a pull lasts pull_steps steps and earns the drop of a
//                                  validation probe's loss (retraining.h)
//   weights      all               every weight, every round
//                random            a seeded random set of groups up to the budget, new each round
//                importance        the groups with the lowest mean importance Ω first, up to the budget
//                bandit:<policy>   groups ranked by the policy each round, per-group (semi-bandit)
//                                  rewards: each group's first-order share −g·Δθ of the validation-loss drop
//   regularizer  none | l2 | ewc | online-ewc | si | mas | sni, with strength λ: the preset's
//                (lambda >= 0), else the regularizer's default (default_lambda, retraining.h); the
//                run's --lambda overrides both
//   distill      a weight >= 0: replayed samples also match the logits stored with them in the memory
//                (dark experience replay, distillation.h); 0: off
//   prior correction  after a round that brings a class never seen before, the output biases move
//                by τ·(log π_seen − log π_round), π_round the class frequencies the round trained on
//                and π_seen those of every chunk seen (their validation parts), τ chosen on
//                validation data (retraining.h); on in bandit-der, off otherwise
// Presets: finetune, full, replay, ewc, si, mas, paper, bandit-ewc, bandit-der (apps/trainer/README.md
// says what paper does and why; bandit-ewc is paper with online EWC, bandit-der bandit-ewc with
// dark experience replay, each chosen on validation data).
#include <string>
#include <vector>

namespace nnr {

struct Strategy {
  std::string name;                  // the preset, or "custom"
  std::string samples = "new";
  std::string weights = "all";
  std::string regularizer = "none";
  float distill = 0.0f;
  bool prior_correction = false;
  float lambda = -1.0f;              // the preset's penalty strength; < 0: the regularizer's default
  // "samples=replay weights=importance regularizer=sni" (and " lambda=30", " distill=0.2",
  // " prior-correction" when set)
  std::string description() const;
  bool samples_from_bandit() const { return samples.rfind("bandit:", 0) == 0; }
  bool weights_from_bandit() const { return weights.rfind("bandit:", 0) == 0; }
  std::string sample_policy() const;  // the <policy> of bandit:<policy>, or ""
  std::string weight_policy() const;
  // Another penalty than the preset's: the preset's λ was chosen for its own regularizer, so the
  // new one takes its default (λ back to -1). The same name keeps the preset's λ.
  void override_regularizer(const std::string& name);
};

// A preset by name; throws nnr::InvalidArgument listing the presets otherwise.
Strategy strategy_preset(const std::string& name);
const std::vector<std::string>& strategy_presets();

// Checks each choice (policy names through the bandit factory, regularizer names, a finite distill
// weight >= 0 on a strategy that replays); throws
// nnr::InvalidArgument naming the bad one and listing the valid values.
void validate_strategy(const Strategy& strategy);

}  // namespace nnr
