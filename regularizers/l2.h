#pragma once
// L2 to the anchor: Ω ≡ 1 (γ = 0, so Ω stays 1 from round to round), θ* ← θ. The baseline
// every importance estimator has to beat.
#include "regularizers/regularizer.h"

namespace nnr {

class L2 final : public Regularizer {
 public:
  L2() : Regularizer(0.0f, AnchorRule::Latest) {}
  std::string name() const override { return "l2"; }
  std::vector<Tensor> estimate(Sequential& model, const Dataset& data) override;
};

}  // namespace nnr
