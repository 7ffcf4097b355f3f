#pragma once
// The fused optimizer updates on the CPU, written on plain pointers so that the CUDA kernels
// (kernels/) and their tests use the same arguments. This is the reference the GPU compares with.
//
// One pass reads θ, g, the optimizer state, the mask, Ω and θ*, and writes θ and the state.
// Masked-out entries are never written (their value and state stay bit-for-bit).
//
// The importance penalty λ Σ Ω (θ − θ*)² is applied in closed form (a proximal step) after
// the unpenalised step θ̃, so it is stable at any λ:
//     θ ← (θ̃ + c·θ*) / (1 + c),   c = 2·lr·λ·Ω
// For SGD-momentum θ̃ = θ − lr·v with v ← μ·v + g + wd·θ (Nesterov: θ − lr·(g + wd·θ + μ·v));
// for Adam θ̃ = θ − lr·m̂ / (√v̂ + ε). The optimizer state sees only the loss gradient (plus
// weight decay), never the penalty's, and for Adam c is not divided by √v̂: the penalty acts like
// AdamW's decoupled decay towards θ*, so an entry with a tiny v̂ is not snapped onto θ*.
// A plain gradient step on the penalty diverges once lr·2λΩ > 2; this form cannot.
#include <cstdint>

#include "engine/optim/update_mask.h"

namespace nnr {

struct MaskView {
  UpdateMask::Kind kind = UpdateMask::Kind::All;
  const int64_t* rows = nullptr;  // Rows: row_count sorted indices
  int64_t row_count = 0;
  int64_t row_length = 1;          // elements per row
  const uint32_t* bits = nullptr;  // Elements: bit i % 32 of word i / 32
};
MaskView view_of(const UpdateMask& mask, int64_t row_length);

struct PenaltyView {
  const float* anchor = nullptr;   // θ*; null: no penalty
  const float* omega = nullptr;    // Ω; null with an anchor: Ω ≡ 1
  float lambda = 0.0f;
  float* path_integral = nullptr;  // SI: += −g·(θ_new − θ_old) on updated entries; null: off
  bool want_value = false;         // compute λ Σ Ω (θ − θ*)² over all entries, before the step
};

struct SgdConfig {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

struct AdamConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // added to the gradient, as torch.optim.Adam does
};

// λ Σ Ω (θ − θ*)² over all n entries (0 when there is no anchor or no value was asked for).
double penalty_value_cpu(const float* theta, int64_t n, const PenaltyView& penalty);

// velocity may be null when momentum == 0. Returns the penalty value when asked, else 0.
double sgd_update_cpu(float* theta, const float* grad, float* velocity, int64_t n, const SgdConfig& config,
                      const MaskView& mask, const PenaltyView& penalty);
// step is the 1-based count of this parameter's updates, for the bias correction.
double adam_update_cpu(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                       const AdamConfig& config, const MaskView& mask, const PenaltyView& penalty);

}  // namespace nnr
