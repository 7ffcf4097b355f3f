#pragma once
// An UpdateMask as the update ops take it (kernels::MaskArgs, kernels/masked_update.h): on the host
// (mask_args_of), or on a CUDA parameter's device (DeviceMaskCache).
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "engine/optim/parameter.h"
#include "engine/optim/update_mask.h"
#include "kernels/masked_update.h"

namespace nnr {

// The mask's host arrays; row_length = elements per row (Parameter::row_length()).
kernels::MaskArgs mask_args_of(const UpdateMask& mask, int64_t row_length);

// The device twin of each parameter's UpdateMask. A mask is uploaded when it first appears and
// again only when it changes (compared with the copy last uploaded), so a step with unchanged
// masks makes no host-to-device copy and no allocation for them.
class DeviceMaskCache {
 public:
  DeviceMaskCache();
  ~DeviceMaskCache();
  DeviceMaskCache(const DeviceMaskCache&) = delete;
  DeviceMaskCache& operator=(const DeviceMaskCache&) = delete;

  // p's mask on device pointers of p.value's Context (valid until the next call for p).
  kernels::MaskArgs view_for(const Parameter& p);

 private:
  struct Entry;
  std::unordered_map<const Parameter*, std::unique_ptr<Entry>> entries_;
};

}  // namespace nnr
