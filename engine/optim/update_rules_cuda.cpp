#include "engine/optim/update_rules_cuda.h"

#include "engine/core/device_copy.h"
#include "engine/core/error.h"
#ifdef NNR_WITH_CUDA
#include "kernels/device_memory.h"
#include "kernels/masked_update.h"
#endif

namespace nnr {

#ifdef NNR_WITH_CUDA
namespace {

kernels::MaskArgs to_kernel_args(const MaskView& mask) {
  kernels::MaskArgs args;
  args.kind = mask.kind == UpdateMask::Kind::All    ? kernels::MaskKind::All
              : mask.kind == UpdateMask::Kind::Rows ? kernels::MaskKind::Rows
                                                    : kernels::MaskKind::Elements;
  args.rows = mask.rows;
  args.row_count = mask.row_count;
  args.row_length = mask.row_length;
  args.bits = mask.bits;
  return args;
}

// The penalty arguments plus the device double that receives the value when one is asked for.
struct DevicePenalty {
  kernels::PenaltyArgs args;
  kernels::DeviceBuffer value;
  DevicePenalty(const PenaltyView& p, Context& ctx) {
    args.anchor = p.anchor;
    args.omega = p.omega;
    args.lambda = p.lambda;
    args.path_integral = p.path_integral;
    args.want_value = p.want_value && p.anchor;
    if (args.want_value) {
      value = kernels::DeviceBuffer(sizeof(double), ctx.allocator());
      args.value = value.as<double>();
    }
  }
  double read(Context& ctx) const {
    if (!args.want_value) return 0.0;
    double host = 0.0;
    value.copy_to_host(&host, sizeof(double), ctx.stream());
    return host;
  }
};

}  // namespace

double penalty_value_cuda(Context& ctx, const float* theta, int64_t n, const PenaltyView& penalty) {
  DevicePenalty p(penalty, ctx);
  if (!p.args.want_value) return 0.0;
  kernels::penalty_value(theta, n, p.args, ctx.stream());
  return p.read(ctx);
}

static_assert(kStepScalarCount == kernels::kStepScalarCount, "one layout of the step scalars");

namespace {

kernels::SgdArgs sgd_args(const SgdConfig& config, const float* device_scalars) {
  return kernels::SgdArgs{config.lr, config.momentum, config.weight_decay, config.nesterov, device_scalars};
}

kernels::AdamArgs adam_args(const AdamConfig& config, const float* device_scalars) {
  return kernels::AdamArgs{config.lr, config.beta1, config.beta2, config.eps, config.weight_decay, device_scalars};
}

}  // namespace

void sgd_step_scalars(const SgdConfig& config, float* out) { kernels::step_scalars(sgd_args(config, nullptr), out); }

void adam_step_scalars(const AdamConfig& config, int64_t step, float* out) {
  kernels::step_scalars(adam_args(config, nullptr), step, out);
}

double sgd_update_cuda(Context& ctx, float* theta, const float* grad, float* velocity, int64_t n,
                       const SgdConfig& config, const MaskView& mask, const PenaltyView& penalty,
                       const float* device_scalars) {
  DevicePenalty p(penalty, ctx);
  const kernels::SgdArgs args = sgd_args(config, device_scalars);
  kernels::sgd_update(theta, grad, velocity, n, args, to_kernel_args(mask), p.args, ctx.stream());
  return p.read(ctx);
}

double adam_update_cuda(Context& ctx, float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                        const AdamConfig& config, const MaskView& mask, const PenaltyView& penalty,
                        const float* device_scalars) {
  DevicePenalty p(penalty, ctx);
  const kernels::AdamArgs args = adam_args(config, device_scalars);
  kernels::adam_update(theta, grad, m, v, n, step, args, to_kernel_args(mask), p.args, ctx.stream());
  return p.read(ctx);
}

struct DeviceMaskCache::Entry {
  DeviceCopy<int64_t> rows;
  DeviceCopy<uint32_t> bits;
};

MaskView DeviceMaskCache::view_for(const Parameter& p) {
  std::unique_ptr<Entry>& entry = entries_[&p];
  if (!entry) entry = std::make_unique<Entry>();
  const Placement where = p.value.placement();
  const UpdateMask& mask = p.mask;
  MaskView view = view_of(mask, p.row_length());
  view.rows = mask.rows.empty() ? nullptr : entry->rows.on(where, mask.rows);
  view.bits = mask.bits.empty() ? nullptr : entry->bits.on(where, mask.bits);
  return view;
}

#else  // built without CUDA

double penalty_value_cuda(Context&, const float*, int64_t, const PenaltyView&) {
  throw_not_implemented_on_cuda("optimizer");
}
double sgd_update_cuda(Context&, float*, const float*, float*, int64_t, const SgdConfig&, const MaskView&,
                       const PenaltyView&, const float*) {
  throw_not_implemented_on_cuda("sgd");
}
double adam_update_cuda(Context&, float*, const float*, float*, float*, int64_t, int64_t, const AdamConfig&,
                        const MaskView&, const PenaltyView&, const float*) {
  throw_not_implemented_on_cuda("adam");
}
void sgd_step_scalars(const SgdConfig&, float*) { throw_not_implemented_on_cuda("sgd"); }
void adam_step_scalars(const AdamConfig&, int64_t, float*) { throw_not_implemented_on_cuda("adam"); }
struct DeviceMaskCache::Entry {};
MaskView DeviceMaskCache::view_for(const Parameter&) { throw_not_implemented_on_cuda("optimizer"); }

#endif

DeviceMaskCache::DeviceMaskCache() = default;
DeviceMaskCache::~DeviceMaskCache() = default;

}  // namespace nnr
