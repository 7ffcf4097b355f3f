#pragma once
// MAS (Aljundi et al. 2018): Ω_new = E_x |∂‖f(x)‖²/∂θ|, f the logits. Needs no labels, so it
// runs on unlabelled serving traffic. Per-sample gradients via gradient_statistics.h.
#include "regularizers/regularizer.h"

namespace nnr {

struct MasOptions {
  int64_t samples = 1024;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  Collective* collective = nullptr;  // data parallel: the estimate split across the ranks
};

class Mas final : public Regularizer {
 public:
  Mas(MasOptions options, float gamma);
  std::string name() const override { return "mas"; }
  std::vector<Tensor> estimate(Sequential& model, const Dataset& data) override;
  uint64_t estimates_made() const override { return rounds_; }
  void set_estimates_made(uint64_t count) override { rounds_ = count; }

 private:
  MasOptions options_;
  uint64_t rounds_ = 0;
};

}  // namespace nnr
