// Fused masked SGD-momentum and Adam updates with the closed-form proximal importance penalty.
//
// Computes, for every selected entry i (mask: all / rows / element bitmap), exactly what
// engine/optim/update_rules.cpp computes (the CPU reference):
//   g = grad[i] + wd·θ;  SGD: v ← μv + g, θ̃ = θ − lr·(Nesterov ? g + μv : v)
//                        Adam: m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g², θ̃ = θ − (lr/c1)·m / (√v/√c2 + ε)
//   θ ← (θ̃ + c·θ*) / (1 + c), c = 2·lr·λ·Ω   (only with an anchor θ*; Ω ≡ 1 when omega is null)
//   path_integral[i] −= grad[i]·(θ_new − θ_old)   (when path_integral is set)
// Layout: contiguous float arrays of n entries; a Rows mask names rows of row_length entries.
// Memory: one read of θ, g, state, θ*, Ω (and the path integral) and one write of θ, state (and
// path integral) per selected entry; unselected entries are not touched (the Rows kernel's grid
// covers only the selected rows, so a 5 % mask moves 5 % of the bytes).
// Accumulation: the penalty value λ Σ Ω (θ − θ*)² (old θ, all n entries) is summed in double per
// thread and per block in a fixed order, and blocks are combined with a double atomicAdd, so it
// can vary between runs in the last bits of a double (far below float resolution). Single-
// precision arithmetic may contract to FMAs, so results match the CPU to a few ulps, not bit-exact.
#include "kernels/masked_update.h"

#include <cmath>
#include <string>

#include "kernels/block_reduce.h"
#include "kernels/launch.h"

namespace nnr::kernels {
namespace {

struct SgdStep {
  float lr, momentum, weight_decay;
  bool nesterov;
  float* velocity;
  const float* scalars;
  __device__ void load_scalars() { lr = scalars[0]; }
  __device__ float operator()(int64_t i, float t, float grad) const {
    const float g = grad + weight_decay * t;
    float direction = g;
    if (momentum != 0.0f) {
      const float v = momentum * velocity[i] + g;
      velocity[i] = v;
      direction = nesterov ? g + momentum * v : v;
    }
    return t - lr * direction;
  }
};

struct AdamStep {
  float beta1, beta2, eps, weight_decay, step_size, inv_sqrt_correction2;
  float* m;
  float* v;
  const float* scalars;
  __device__ void load_scalars() {
    step_size = scalars[1];
    inv_sqrt_correction2 = scalars[2];
  }
  __device__ float operator()(int64_t i, float t, float grad) const {
    const float g = grad + weight_decay * t;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) * inv_sqrt_correction2 + eps;
    return t - step_size * mi / denom;
  }
};

// Ω (θ − θ*)² of one entry, in double as the CPU reference sums it.
__device__ inline double penalty_term(int64_t i, float t, const PenaltyArgs& p) {
  const double d = static_cast<double>(t) - p.anchor[i];
  return (p.omega ? static_cast<double>(p.omega[i]) : 1.0) * d * d;
}

// The proximal step towards θ* and the SI path integral (update_rules.cpp: finish_update).
__device__ inline float finish_update(int64_t i, float old_theta, float stepped, float g, float lr,
                                      const PenaltyArgs& p) {
  float result = stepped;
  if (p.anchor) {
    const float c = 2.0f * lr * p.lambda * (p.omega ? p.omega[i] : 1.0f);
    result = (stepped + c * p.anchor[i]) / (1.0f + c);
  }
  if (p.path_integral) p.path_integral[i] -= g * (result - old_theta);
  return result;
}

__device__ inline void add_block_value(double partial, const PenaltyArgs& p) {
  const double total = block_sum(partial);
  if (threadIdx.x == 0 && total != 0.0) atomicAdd(p.value, static_cast<double>(p.lambda) * total);
}

// Mask All (kBits false) or Elements (kBits true): grid-stride over all n entries. With kValue,
// every entry (selected or not) adds its penalty term before the step.
template <typename Step, bool kBits, bool kValue>
__global__ void update_dense_kernel(int64_t n, float* __restrict__ theta, const float* __restrict__ grad, Step step,
                                    float lr, const uint32_t* __restrict__ bits, PenaltyArgs p) {
  if (step.scalars) {
    step.load_scalars();
    lr = step.scalars[0];
  }
  double partial = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const bool selected = !kBits || ((bits[i >> 5] >> (i & 31)) & 1u);
    if (!selected) {
      if (kValue) partial += penalty_term(i, theta[i], p);
      continue;
    }
    const float t = theta[i];
    const float g = grad[i];
    if (kValue) partial += penalty_term(i, t, p);
    theta[i] = finish_update(i, t, step(i, t, g), g, lr, p);
  }
  if (kValue) add_block_value(partial, p);
}

// Mask Rows: grid-stride over the `total` = row_count · row_length selected entries only.
// Index math in 32 bits when it fits (a 64-bit division per entry costs more than the load).
template <typename Step, typename Index>
__global__ void update_rows_kernel(int64_t total, float* __restrict__ theta, const float* __restrict__ grad, Step step,
                                   float lr, const int64_t* __restrict__ rows, int64_t row_length, PenaltyArgs p) {
  if (step.scalars) {
    step.load_scalars();
    lr = step.scalars[0];
  }
  const Index length = static_cast<Index>(row_length);
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const Index local = static_cast<Index>(e);
    const Index r = local / length;
    const int64_t i = rows[r] * row_length + static_cast<int64_t>(local - r * length);
    const float t = theta[i];
    const float g = grad[i];
    theta[i] = finish_update(i, t, step(i, t, g), g, lr, p);
  }
}

__global__ void penalty_value_kernel(int64_t n, const float* __restrict__ theta, PenaltyArgs p) {
  double partial = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) partial += penalty_term(i, theta[i], p);
  add_block_value(partial, p);
}

void check_args(const char* op, float* theta, const float* grad, int64_t n, const MaskArgs& mask,
                const PenaltyArgs& p) {
  const std::string name = std::string("[") + op + "] ";
  if (n < 0) throw InvalidArgument(name + "negative element count " + std::to_string(n));
  if (n > 0 && (!theta || !grad)) throw InvalidArgument(name + "null theta or grad");
  if (p.want_value && p.anchor && !p.value)
    throw InvalidArgument(name + "want_value needs a device double in PenaltyArgs::value");
  if (mask.kind == MaskKind::Rows) {
    if (mask.row_count < 0 || mask.row_length < 1)
      throw InvalidArgument(name + "rows mask needs row_count >= 0 and row_length >= 1, got " +
                            std::to_string(mask.row_count) + " and " + std::to_string(mask.row_length));
    if (mask.row_count > 0 && !mask.rows) throw InvalidArgument(name + "rows mask without row indices");
  }
  if (mask.kind == MaskKind::Elements && n > 0 && !mask.bits)
    throw InvalidArgument(name + "element mask without bit words");
}

// Writes the penalty value for masks whose update kernel does not visit every entry (Rows), or
// zero when no value can be computed; returns true when the update kernel must add it (dense masks).
bool prepare_value(const float* theta, int64_t n, const MaskArgs& mask, const PenaltyArgs& p, cudaStream_t stream) {
  if (!p.want_value) return false;
  if (p.value) NNR_CUDA_CHECK(cudaMemsetAsync(p.value, 0, sizeof(double), stream));
  if (!p.anchor || n == 0) return false;
  if (mask.kind != MaskKind::Rows) return true;
  launch_1d(n, stream, penalty_value_kernel, theta, p);
  return false;
}

template <typename Step>
void run_update(float* theta, const float* grad, int64_t n, const Step& step, float lr, const MaskArgs& mask,
                const PenaltyArgs& p, cudaStream_t stream) {
  const bool fused_value = prepare_value(theta, n, mask, p, stream);
  switch (mask.kind) {
    case MaskKind::All:
      if (fused_value)
        launch_1d(n, stream, update_dense_kernel<Step, false, true>, theta, grad, step, lr, nullptr, p);
      else
        launch_1d(n, stream, update_dense_kernel<Step, false, false>, theta, grad, step, lr, nullptr, p);
      break;
    case MaskKind::Elements:
      if (fused_value)
        launch_1d(n, stream, update_dense_kernel<Step, true, true>, theta, grad, step, lr, mask.bits, p);
      else
        launch_1d(n, stream, update_dense_kernel<Step, true, false>, theta, grad, step, lr, mask.bits, p);
      break;
    case MaskKind::Rows: {
      const int64_t total = mask.row_count * mask.row_length;
      if (total <= int64_t{0xffffffff})
        launch_1d(total, stream, update_rows_kernel<Step, uint32_t>, theta, grad, step, lr, mask.rows,
                  mask.row_length, p);
      else
        launch_1d(total, stream, update_rows_kernel<Step, int64_t>, theta, grad, step, lr, mask.rows,
                  mask.row_length, p);
      break;
    }
  }
}

}  // namespace

void sgd_update(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& c, const MaskArgs& mask,
                const PenaltyArgs& penalty, cudaStream_t stream) {
  check_args("sgd_update", theta, grad, n, mask, penalty);
  if (c.momentum != 0.0f && n > 0 && !velocity)
    throw InvalidArgument("[sgd_update] momentum " + std::to_string(c.momentum) + " needs a velocity buffer");
  const SgdStep step{c.lr, c.momentum, c.weight_decay, c.nesterov, velocity, c.scalars};
  run_update(theta, grad, n, step, c.lr, mask, penalty, stream);
}

void adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step, const AdamArgs& c,
                 const MaskArgs& mask, const PenaltyArgs& penalty, cudaStream_t stream) {
  check_args("adam_update", theta, grad, n, mask, penalty);
  if (n > 0 && (!m || !v)) throw InvalidArgument("[adam_update] null moment buffer");
  if (step < 1) throw InvalidArgument("[adam_update] step must be >= 1, got " + std::to_string(step));
  float scalars[kStepScalarCount];
  step_scalars(c, step, scalars);
  const AdamStep adam{c.beta1, c.beta2, c.eps, c.weight_decay, scalars[1], scalars[2], m, v, c.scalars};
  run_update(theta, grad, n, adam, c.lr, mask, penalty, stream);
}

void step_scalars(const SgdArgs& c, float out[kStepScalarCount]) {
  out[0] = c.lr;
  out[1] = c.lr;
  out[2] = 1.0f;
}

void step_scalars(const AdamArgs& c, int64_t step, float out[kStepScalarCount]) {
  // Bias corrections on the host in double, exactly as adam_update_cpu computes them.
  const float correction1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta1), static_cast<double>(step)));
  const float correction2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(c.beta2), static_cast<double>(step)));
  out[0] = c.lr;
  out[1] = c.lr / correction1;
  out[2] = 1.0f / std::sqrt(correction2);
}

void penalty_value(const float* theta, int64_t n, const PenaltyArgs& p, cudaStream_t stream) {
  if (!p.want_value) return;
  if (!p.value) throw InvalidArgument("[penalty_value] want_value needs a device double in PenaltyArgs::value");
  NNR_CUDA_CHECK(cudaMemsetAsync(p.value, 0, sizeof(double), stream));
  if (p.anchor) launch_1d(n, stream, penalty_value_kernel, theta, p);
}

}  // namespace nnr::kernels
