#pragma once
// The fused optimizer updates of update_rules.h on CUDA tensors: the same arguments, with every
// pointer (θ, g, state, mask rows / bits, anchor, Ω, path integral) a device pointer of `ctx`.
// They launch kernels/masked_update on the context's stream; when a penalty value is asked for
// they wait for it (one 8-byte download). In a build without CUDA they throw nnr::Error.
// `device_scalars`, when set, is where the kernel reads the step's learning rate and Adam's bias
// corrections (kernels/masked_update.h: kStepScalarCount floats on the device) instead of taking
// them from `config` and `step`; *_step_scalars write those values on the host.
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "engine/core/context.h"
#include "engine/optim/parameter.h"
#include "engine/optim/update_rules.h"

namespace nnr {

double penalty_value_cuda(Context& ctx, const float* theta, int64_t n, const PenaltyView& penalty);
double sgd_update_cuda(Context& ctx, float* theta, const float* grad, float* velocity, int64_t n,
                       const SgdConfig& config, const MaskView& mask, const PenaltyView& penalty,
                       const float* device_scalars = nullptr);
double adam_update_cuda(Context& ctx, float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                        const AdamConfig& config, const MaskView& mask, const PenaltyView& penalty,
                        const float* device_scalars = nullptr);

constexpr int kStepScalarCount = 3;
void sgd_step_scalars(const SgdConfig& config, float* out);
void adam_step_scalars(const AdamConfig& config, int64_t step, float* out);

// The device twin of each parameter's UpdateMask. A mask is uploaded when it first appears and
// again only when it changes (compared with the copy last uploaded), so a step with unchanged
// masks makes no host-to-device copy and no allocation for them.
class DeviceMaskCache {
 public:
  DeviceMaskCache();
  ~DeviceMaskCache();
  DeviceMaskCache(const DeviceMaskCache&) = delete;
  DeviceMaskCache& operator=(const DeviceMaskCache&) = delete;

  // p's mask as a MaskView on device pointers of p.value's Context (valid until the next call for p).
  MaskView view_for(const Parameter& p);

 private:
  struct Entry;
  std::unordered_map<const Parameter*, std::unique_ptr<Entry>> entries_;
};

}  // namespace nnr
