#include "regularizers/l2.h"

namespace nnr {

std::vector<Tensor> L2::estimate(Sequential& model, const Dataset& /*data*/) {
  std::vector<Tensor> omega;
  for (Parameter* p : model.parameters()) {
    omega.emplace_back(p->value.shape());
    omega.back().fill(1.0f);
  }
  return omega;
}

}  // namespace nnr
