#include "regularizers/regularizer.h"

#include <cmath>

#include "engine/core/error.h"

namespace nnr {

Regularizer::Regularizer(float gamma, AnchorRule anchor_rule) : gamma_(gamma), anchor_rule_(anchor_rule) {
  if (!(gamma >= 0.0f) || !std::isfinite(gamma))
    throw InvalidArgument("[regularizer] decay gamma must be a finite number >= 0, got " + std::to_string(gamma));
}

void Regularizer::begin_task(Sequential& /*model*/) {}

void Regularizer::consolidate(Sequential& model, const Dataset& data) {
  std::vector<Tensor> omega_new = estimate(model, data);
  consolidate_importance(model.parameters(), std::move(omega_new), gamma_, anchor_rule_);
}

void consolidate_importance(const std::vector<Parameter*>& params, std::vector<Tensor> omega_new, float gamma,
                            AnchorRule rule) {
  if (omega_new.size() != params.size())
    throw InvalidArgument("[regularizer] consolidation got " + std::to_string(omega_new.size()) +
                          " importance tensors for " + std::to_string(params.size()) + " parameters");
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    Tensor& fresh = omega_new[i];
    require_shape(fresh, p.value.shape(), "regularizer", ("new importance of " + p.name).c_str());
    const int64_t n = p.value.numel();
    const bool first = !p.anchor.defined();
    if (first) {
      p.omega = std::move(fresh);
      p.anchor = p.value.clone();
      continue;
    }
    if (!p.omega.defined()) {  // an anchor without Ω means Ω ≡ 1
      p.omega = Tensor(p.value.shape());
      p.omega.fill(1.0f);
    }
    float* omega = p.omega.data();
    float* anchor = p.anchor.data();
    const float* theta = p.value.data();
    const float* add = fresh.data();
    for (int64_t k = 0; k < n; ++k) {
      const float old_part = gamma * omega[k];
      const float total = old_part + add[k];
      if (rule == AnchorRule::WeightedMean && total > 0.0f)
        anchor[k] = (old_part * anchor[k] + add[k] * theta[k]) / total;
      else
        anchor[k] = theta[k];
      omega[k] = total;
    }
  }
}

}  // namespace nnr
