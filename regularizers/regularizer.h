#pragma once
// Regularizer: fills each parameter's importance Ω and anchor θ* for the penalty
// λ Σ Ω (θ − θ*)² that the optimizer applies inside its update (kernels/masked_update.h;
// λ is the optimizer's, set with Optimizer::set_penalty_strength).
//
// A round (a task, a day of traffic) with a regularizer:
//   reg.begin_task(model);              // e.g. SI zeroes its path integrals
//   ... train: optimizer.step(params) applies the penalty and accumulates SI's path integral ...
//   reg.consolidate(model, sample);     // Ω ← γ·Ω + Ω_new, θ* ← θ
// estimate() is this round's Ω_new alone, one tensor per parameter in model.parameters() order.
// The estimators read all gradients: they open every parameter for their own backward passes,
// restore each parameter's UpdateMask afterwards and leave the gradients zeroed.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/collective.h"
#include "engine/data/dataset.h"
#include "engine/nn/sequential.h"

namespace nnr {

// How θ* moves at consolidation.
enum class AnchorRule {
  Latest,        // θ* ← θ (online EWC, SI, MAS, L2, SNI)
  WeightedMean,  // θ* ← (γ·Ω_old·θ*_old + Ω_new·θ) / (γ·Ω_old + Ω_new): with Ω ← γ·Ω_old + Ω_new this
                 // is exactly the sum of one penalty per past round, Σ_t Ω_t (θ − θ_t)² up to a constant
                 // (EWC as Kirkpatrick et al. wrote it, one quadratic per task)
};

class Regularizer {
 public:
  Regularizer(float gamma, AnchorRule anchor_rule);
  virtual ~Regularizer() = default;

  virtual std::string name() const = 0;
  // Called before training on a new round's data. Default: nothing.
  virtual void begin_task(Sequential& model);
  // This round's importance Ω_new (>= 0), one tensor per parameter, estimated on `data`.
  virtual std::vector<Tensor> estimate(Sequential& model, const Dataset& data) = 0;

  // Ω ← γ·Ω + estimate(model, data) and θ* as the anchor rule says (θ* ← θ on the first round).
  void consolidate(Sequential& model, const Dataset& data);

  // Estimates made so far: each one's random subset (and sampled labels) varies with it. Saved with
  // a served model so that a restored run draws what an uninterrupted one would. Default: none kept.
  virtual uint64_t estimates_made() const { return 0; }
  virtual void set_estimates_made(uint64_t /*count*/) {}

  float gamma() const { return gamma_; }
  AnchorRule anchor_rule() const { return anchor_rule_; }

 private:
  float gamma_;
  AnchorRule anchor_rule_;
};

// Ω ← γ·Ω + omega_new[i] and θ* per `rule` for every parameter (omega_new in parameters() order).
void consolidate_importance(const std::vector<Parameter*>& params, std::vector<Tensor> omega_new, float gamma,
                            AnchorRule rule);

struct RegularizerOptions {
  float gamma = -1.0f;           // Ω decay per round; < 0: the regularizer's default (online-ewc 0.9,
                                 // l2 0, others 1)
  int64_t samples = 1024;        // samples an estimate reads (a seeded random subset); 0: all
  int64_t batch_size = 256;      // estimation batch size
  uint64_t seed = 0;             // subset choice and sampled-Fisher labels
  bool sampled_fisher = false;   // EWC: labels drawn from the model's predictive distribution
                                 // instead of the true ones (empirical Fisher)
  float si_damping = 0.1f;       // SI's ξ in Ω = ω / (Δθ² + ξ)
  std::string synapse = "mas";   // SNI: the synapse importance it wraps (ewc, mas, si)
  float synapse_weight = 1.0f;   // SNI: weight of the (normalised) synapse importance
  float neuron_out_weight = 1.0f;  // SNI: weight of the importance of the neuron a weight feeds
  float neuron_in_weight = 1.0f;   // SNI: weight of the importance of the neuron a weight reads
  // Data parallel: the estimates' samples are split across these ranks and reduced
  // (gradient_statistics.h); every rank must consolidate alike. Not part of a saved state.
  Collective* collective = nullptr;
};

// Names: l2, ewc, online-ewc, si, mas, sni. Throws nnr::InvalidArgument listing them otherwise.
std::unique_ptr<Regularizer> make_regularizer(const std::string& name, const RegularizerOptions& options = {});
const std::vector<std::string>& regularizer_names();

}  // namespace nnr
