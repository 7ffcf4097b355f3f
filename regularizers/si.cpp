#include "regularizers/si.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace nnr {

Si::Si(float damping, float gamma) : Regularizer(gamma, AnchorRule::Latest), damping_(damping) {
  if (!(damping > 0.0f) || !std::isfinite(damping))
    throw InvalidArgument("[regularizer] si: damping xi must be a positive number, got " + std::to_string(damping));
}

void Si::begin_task(Sequential& model) {
  start_.clear();
  for (Parameter* p : model.parameters()) {
    p->path_integral = Tensor(p->value.shape());
    start_.push_back(p->value.clone());
  }
}

std::vector<Tensor> Si::estimate(Sequential& model, const Dataset& /*data*/) {
  const std::vector<Parameter*> params = model.parameters();
  if (start_.size() != params.size())
    throw Error("[regularizer] si: begin_task(model) must be called before training and consolidation");
  std::vector<Tensor> omega;
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    require_shape(p.path_integral, p.value.shape(), "regularizer", ("si path integral of " + p.name).c_str());
    Tensor o(p.value.shape());
    for (int64_t k = 0; k < o.numel(); ++k) {
      const float delta = p.value[k] - start_[i][k];
      o[k] = std::max(p.path_integral[k], 0.0f) / (delta * delta + damping_);
    }
    omega.push_back(std::move(o));
  }
  return omega;
}

}  // namespace nnr
