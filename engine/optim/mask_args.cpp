#include "engine/optim/mask_args.h"

#include "engine/core/device_copy.h"

namespace nnr {

kernels::MaskArgs mask_args_of(const UpdateMask& mask, int64_t row_length) {
  kernels::MaskArgs v;
  v.kind = mask.kind == UpdateMask::Kind::All    ? kernels::MaskKind::All
           : mask.kind == UpdateMask::Kind::Rows ? kernels::MaskKind::Rows
                                                 : kernels::MaskKind::Elements;
  v.rows = mask.rows.data();
  v.row_count = static_cast<int64_t>(mask.rows.size());
  v.row_length = row_length;
  v.bits = mask.bits.data();
  return v;
}

struct DeviceMaskCache::Entry {
  DeviceCopy<int64_t> rows;
  DeviceCopy<uint32_t> bits;
};

DeviceMaskCache::DeviceMaskCache() = default;
DeviceMaskCache::~DeviceMaskCache() = default;

kernels::MaskArgs DeviceMaskCache::view_for(const Parameter& p) {
  std::unique_ptr<Entry>& entry = entries_[&p];
  if (!entry) entry = std::make_unique<Entry>();
  const Placement where = p.value.placement();
  const UpdateMask& mask = p.mask;
  kernels::MaskArgs view = mask_args_of(mask, p.row_length());
  view.rows = mask.rows.empty() ? nullptr : entry->rows.on(where, mask.rows);
  view.bits = mask.bits.empty() ? nullptr : entry->bits.on(where, mask.bits);
  return view;
}

}  // namespace nnr
