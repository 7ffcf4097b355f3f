#pragma once
// SI, synaptic intelligence (Zenke et al. 2017). During training the optimizer accumulates
// ω += −g·Δθ per step into Parameter::path_integral (g the loss gradient, Δθ the step actually
// taken, penalty included); begin_task zeroes ω and remembers θ at the round's start. Then
//   Ω_new = max(ω, 0) / ((θ − θ_start)² + ξ)
// A negative ω (the loss rose along the path, e.g. from noise or the penalty's pull) is read
// as "no importance" so that Ω stays >= 0, which the proximal update needs.
// The estimate reads no data.
#include "regularizers/regularizer.h"

namespace nnr {

class Si final : public Regularizer {
 public:
  Si(float damping, float gamma);
  std::string name() const override { return "si"; }
  void begin_task(Sequential& model) override;
  std::vector<Tensor> estimate(Sequential& model, const Dataset& data) override;

 private:
  float damping_;
  std::vector<Tensor> start_;  // θ at begin_task, per parameter
};

}  // namespace nnr
