#include "regularizers/importance_state.h"

#include "engine/core/error.h"

namespace nnr {

std::vector<std::pair<std::string, const Tensor*>> importance_tensors(Sequential& model) {
  std::vector<std::pair<std::string, const Tensor*>> out;
  for (Parameter* p : model.parameters()) {
    if (p->omega.defined()) out.emplace_back(kOmegaPrefix + p->name, &p->omega);
    if (p->anchor.defined()) out.emplace_back(kAnchorPrefix + p->name, &p->anchor);
  }
  return out;
}

int restore_importance(Sequential& model, const Checkpoint& file) {
  int restored = 0;
  for (Parameter* p : model.parameters()) {
    const std::string omega_name = kOmegaPrefix + p->name, anchor_name = kAnchorPrefix + p->name;
    const bool has_omega = file.find(omega_name) != nullptr, has_anchor = file.find(anchor_name) != nullptr;
    if (has_omega && !has_anchor)
      throw InvalidArgument("[regularizer] " + file.path + ": '" + omega_name + "' has no '" + anchor_name + "'");
    p->omega = has_omega ? file.require(omega_name, p->value.shape()).clone() : Tensor();
    p->anchor = has_anchor ? file.require(anchor_name, p->value.shape()).clone() : Tensor();
    if (has_anchor) ++restored;
  }
  return restored;
}

}  // namespace nnr
