#pragma once
// EWC: Ω_new = the diagonal Fisher, E_x[(∂ log p(y|x)/∂θ)²] over the estimation sample, from
// per-sample gradients (gradient_statistics.h). Labels are the true ones (empirical Fisher) or
// drawn from the model's own predictive distribution (the Fisher proper; works without labels).
//   "ewc":        γ = 1 and one quadratic per past round (AnchorRule::WeightedMean), as in
//                 Kirkpatrick et al. 2017
//   "online-ewc": γ < 1 and the anchor at the latest θ (Schwarz et al. 2018)
#include "regularizers/regularizer.h"

namespace nnr {

struct EwcOptions {
  bool sampled_labels = false;
  int64_t samples = 1024;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  Collective* collective = nullptr;  // data parallel: the estimate split across the ranks
};

class Ewc final : public Regularizer {
 public:
  Ewc(EwcOptions options, float gamma, AnchorRule anchor_rule, std::string name = "ewc");
  std::string name() const override { return name_; }
  std::vector<Tensor> estimate(Sequential& model, const Dataset& data) override;
  uint64_t estimates_made() const override { return rounds_; }
  void set_estimates_made(uint64_t count) override { rounds_ = count; }

 private:
  EwcOptions options_;
  std::string name_;
  uint64_t rounds_ = 0;  // varies the sampled labels' seed from round to round
};

}  // namespace nnr
