#include "engine/nn/layer.h"

namespace nnr {

bool Layer::has_open_parameters() {
  for (Parameter* p : parameters())
    if (!p->mask.selects_none()) return true;
  return false;
}

}  // namespace nnr
