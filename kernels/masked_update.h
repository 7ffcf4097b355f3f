#pragma once
// Fused masked optimizer updates with the closed-form importance penalty: the CPU reference
// (*_cpu, kernels/masked_update.cpp) and the CUDA launchers (kernels/masked_update.cu) take the
// same plain structs (kernels/ knows no engine types); the launchers add a stream, and their
// pointers are device pointers.
//
// One pass reads θ, g, the optimizer state, the mask, Ω and θ*, and writes θ and the state.
// The importance penalty λ Σ Ω (θ − θ*)² is applied in closed form (a proximal step) after
// the unpenalised step θ̃, so it is stable at any λ:
//     θ ← (θ̃ + c·θ*) / (1 + c),   c = 2·lr·λ·Ω
// For SGD-momentum θ̃ = θ − lr·v with v ← μ·v + g + wd·θ (Nesterov: θ − lr·(g + wd·θ + μ·v));
// for Adam θ̃ = θ − lr·m̂ / (√v̂ + ε). The optimizer state sees only the loss gradient (plus
// weight decay), never the penalty's, and for Adam c is not divided by √v̂: the penalty acts like
// AdamW's decoupled decay towards θ*, so an entry with a tiny v̂ is not snapped onto θ*.
// A plain gradient step on the penalty diverges once lr·2λΩ > 2; this form cannot.
//
// Layout: theta, grad, the optimizer state, anchor, omega and path_integral are contiguous float
// arrays of n entries. A Rows mask selects rows of `row_length` consecutive entries.
// Per selected entry: one read of every input array and one write of theta and the state.
// Masked-out entries are never written (value and state stay bit-for-bit).

#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nnr::kernels {

enum class MaskKind { All, Rows, Elements };

struct MaskArgs {
  MaskKind kind = MaskKind::All;
  const int64_t* rows = nullptr;   // Rows: row_count sorted row indices (device)
  int64_t row_count = 0;
  int64_t row_length = 1;          // elements per row
  const uint32_t* bits = nullptr;  // Elements: bit i % 32 of word i / 32 (device, ceil(n / 32) words)
};

struct PenaltyArgs {
  const float* anchor = nullptr;   // θ*; null: no penalty
  const float* omega = nullptr;    // Ω; null with an anchor: Ω ≡ 1
  float lambda = 0.0f;
  float* path_integral = nullptr;  // SI: += −g·(θ_new − θ_old) on updated entries; null: off
  bool want_value = false;         // compute λ Σ Ω (θ − θ*)² over all n entries, before the step
  double* value = nullptr;         // device double receiving that value (required when want_value
                                   // and anchor are set; overwritten, 0 when there is no anchor)
};

// Per-step scalars read on the device, so that a captured step (kernels/cuda/graph.h) replays with a
// new learning rate and a new Adam bias correction: when `scalars` is set, the kernel reads
// scalars[0] = lr and, for Adam, scalars[1] = lr / c1 and scalars[2] = 1 / sqrt(c2) instead of
// computing them from the fields here. step_scalars() writes exactly the values the kernel would
// otherwise compute, so both ways give bit-identical updates.
constexpr int kStepScalarCount = 3;

struct SgdArgs {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  const float* scalars = nullptr;  // device, kStepScalarCount floats; null: use lr
};

struct AdamArgs {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // added to the gradient, as torch.optim.Adam does
  const float* scalars = nullptr;  // device, kStepScalarCount floats; null: computed from lr and step
};

// ---- CPU reference (kernels/masked_update.cpp). Host pointers; `scalars` and PenaltyArgs::value
// are the kernels' (ignored here): the penalty value is returned.

// λ Σ Ω (θ − θ*)² over all n entries (0 when there is no anchor or no value was asked for).
double penalty_value_cpu(const float* theta, int64_t n, const PenaltyArgs& penalty);
// velocity may be null when momentum == 0. Returns the penalty value when asked, else 0.
double sgd_update_cpu(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& config,
                      const MaskArgs& mask, const PenaltyArgs& penalty);
// step is the 1-based count of this parameter's updates, for the bias correction.
double adam_update_cpu(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                       const AdamArgs& config, const MaskArgs& mask, const PenaltyArgs& penalty);

// ---- CUDA launchers (kernels/masked_update.cu).

// The per-step scalars of one update (host; kernels/masked_update.cpp): {lr, lr, 1} for SGD; for Adam the bias corrections
// c1 = 1 − β1^step, c2 = 1 − β2^step in double, as the CPU reference computes them.
void step_scalars(const SgdArgs& config, float out[kStepScalarCount]);
void step_scalars(const AdamArgs& config, int64_t step, float out[kStepScalarCount]);

// How the update kernels access memory. Auto: four entries per 16-byte access when every array is
// 16-byte aligned (and, for a Rows mask, row_length % 4 == 0), else one entry per access. Scalar
// and Vector4 force one way (Vector4 throws InvalidArgument where it cannot apply): for the tests
// and the benchmark, which compare the two; the engine leaves Auto.
enum class UpdatePath { Auto, Scalar, Vector4 };

// velocity may be null when momentum == 0. Asynchronous on `stream`.
void sgd_update(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& config,
                const MaskArgs& mask, const PenaltyArgs& penalty, cudaStream_t stream,
                UpdatePath path = UpdatePath::Auto);
// step is the 1-based count of this parameter's updates (bias correction, computed on the host
// in double exactly as the CPU reference does).
void adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step, const AdamArgs& config,
                 const MaskArgs& mask, const PenaltyArgs& penalty, cudaStream_t stream,
                UpdatePath path = UpdatePath::Auto);
// λ Σ Ω (θ − θ*)² over n entries into *penalty.value (0 without an anchor or want_value).
void penalty_value(const float* theta, int64_t n, const PenaltyArgs& penalty, cudaStream_t stream);

}  // namespace nnr::kernels
