#include "engine/nn/layer.h"

#include <algorithm>

#include "engine/core/error.h"

namespace nnr {

bool Layer::has_open_parameters() {
  for (Parameter* p : parameters())
    if (!p->mask.selects_none()) return true;
  return false;
}

bool Layer::output_grad_channels(const Shape& /*x*/, const Shape& /*y*/, bool /*dx_wanted*/,
                                 const std::vector<int64_t>* /*dx_channels*/, std::vector<int64_t>& /*dy_channels*/) {
  return false;
}

void Layer::require_channels(const std::vector<int64_t>& channels, int64_t limit) const {
  for (size_t k = 0; k < channels.size(); ++k)
    if (channels[k] < 0 || channels[k] >= limit || (k > 0 && channels[k] <= channels[k - 1]))
      throw InvalidArgument("[" + describe() + "] input-gradient channels must increase within [0, " +
                            std::to_string(limit) + ")");
}

Tensor& Layer::scratch(Tensor& buffer, const Shape& shape, const Placement& where) {
  if (!buffer.defined() || buffer.shape() != shape || buffer.device() != where.device ||
      buffer.context() != where.context)
    buffer = Tensor::empty(shape, where);
  return buffer;
}

bool Layer::open_rows_of(const std::vector<const UpdateMask*>& masks, std::vector<int64_t>& dy_channels) {
  dy_channels.clear();
  for (const UpdateMask* m : masks) {
    if (m->kind != UpdateMask::Kind::Rows) return false;
    const size_t before = dy_channels.size();
    dy_channels.insert(dy_channels.end(), m->rows.begin(), m->rows.end());
    std::inplace_merge(dy_channels.begin(), dy_channels.begin() + static_cast<std::ptrdiff_t>(before),
                       dy_channels.end());
  }
  dy_channels.erase(std::unique(dy_channels.begin(), dy_channels.end()), dy_channels.end());
  return true;
}

bool Layer::same_channels(bool dx_wanted, const std::vector<int64_t>* dx_channels,
                          std::vector<int64_t>& dy_channels) {
  if (!dx_wanted || !dx_channels) return false;
  dy_channels = *dx_channels;
  return true;
}

}  // namespace nnr
