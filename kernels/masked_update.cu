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
// covers only the selected rows, so a 5 % mask moves 5 % of the bytes). When every array is
// 16-byte aligned (and, for Rows, the row length divisible by 4) the kernels move four entries per
// 16-byte access (UpdatePath::Auto); the per-entry arithmetic is the same function either way.
// Accumulation: the penalty value λ Σ Ω (θ − θ*)² (old θ, all n entries) is summed in double per
// thread and per block in a fixed order, and blocks are combined with a double atomicAdd, so it
// can vary between runs in the last bits of a double (far below float resolution). Single-
// precision arithmetic may contract to FMAs, so results match the CPU to a few ulps, not bit-exact.
#include "kernels/masked_update.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/block_reduce.h"
#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

// The optimizers' step on one entry held in registers: s1 / s2 are the entry's state (velocity;
// Adam's m and v), read before and written after; first_state()/second_state() say which state
// arrays the step reads and writes (null: none, e.g. SGD without momentum leaves velocity alone).
struct SgdStep {
  float lr, momentum, weight_decay;
  bool nesterov;
  float* velocity;
  const float* scalars;
  __device__ void load_scalars() { lr = scalars[0]; }
  __device__ float* first_state() const { return momentum != 0.0f ? velocity : nullptr; }
  __device__ float* second_state() const { return nullptr; }
  __device__ float operator()(float t, float grad, float& s1, float&) const {
    const float g = grad + weight_decay * t;
    float direction = g;
    if (momentum != 0.0f) {
      const float v = momentum * s1 + g;
      s1 = v;
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
  __device__ float* first_state() const { return m; }
  __device__ float* second_state() const { return v; }
  __device__ float operator()(float t, float grad, float& s1, float& s2) const {
    const float g = grad + weight_decay * t;
    const float mi = beta1 * s1 + (1.0f - beta1) * g;
    const float vi = beta2 * s2 + (1.0f - beta2) * g * g;
    s1 = mi;
    s2 = vi;
    const float denom = sqrtf(vi) * inv_sqrt_correction2 + eps;
    return t - step_size * mi / denom;
  }
};

// One entry's operands, loaded once: θ, g, the state, θ*, Ω (1 when null) and the path integral.
struct Entry {
  float t, g, s1, s2, anchor, omega, path;
};

// Ω (θ − θ*)² of one entry, in double as the CPU reference sums it.
__device__ inline double penalty_term(const Entry& e) {
  const double d = static_cast<double>(e.t) - e.anchor;
  return static_cast<double>(e.omega) * d * d;
}

// The step, then the proximal step towards θ* and the SI path integral (update_rules.cpp:
// finish_update); writes the new θ, state and path integral into e.
template <typename Step>
__device__ inline void update_entry(const Step& step, float lr, const PenaltyArgs& p, Entry& e) {
  const float old_theta = e.t;
  float result = step(e.t, e.g, e.s1, e.s2);
  if (p.anchor) {
    const float c = 2.0f * lr * p.lambda * e.omega;
    result = (result + c * e.anchor) / (1.0f + c);
  }
  if (p.path_integral) e.path -= e.g * (result - old_theta);
  e.t = result;
}

template <typename Step>
__device__ inline Entry load_entry(int64_t i, const float* theta, const float* grad, const Step& step,
                                   const PenaltyArgs& p) {
  Entry e{theta[i], grad[i], 0.0f, 0.0f, 0.0f, 1.0f, 0.0f};
  if (const float* s = step.first_state()) e.s1 = s[i];
  if (const float* s = step.second_state()) e.s2 = s[i];
  if (p.anchor) e.anchor = p.anchor[i];
  if (p.omega) e.omega = p.omega[i];
  if (p.path_integral) e.path = p.path_integral[i];
  return e;
}

// Only what the penalty value reads: θ, θ* and Ω (p.anchor must be set).
__device__ inline Entry load_penalty_operands(int64_t i, const float* theta, const PenaltyArgs& p) {
  return {theta[i], 0.0f, 0.0f, 0.0f, p.anchor[i], p.omega ? p.omega[i] : 1.0f, 0.0f};
}

template <typename Step>
__device__ inline void store_entry(int64_t i, float* theta, const Step& step, const PenaltyArgs& p, const Entry& e) {
  theta[i] = e.t;
  if (float* s = step.first_state()) s[i] = e.s1;
  if (float* s = step.second_state()) s[i] = e.s2;
  if (p.path_integral) p.path_integral[i] = e.path;
}

// Four consecutive entries through 16-byte loads and stores (every array 16-byte aligned).
struct Entry4 {
  float4 t, g, s1, s2, anchor, omega, path;
};

__device__ inline float& lane(float4& v, int k) { return (&v.x)[k]; }

template <typename Step>
__device__ inline Entry4 load_entry4(int64_t j, const float* theta, const float* grad, const Step& step,
                                     const PenaltyArgs& p) {
  const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  Entry4 e{reinterpret_cast<const float4*>(theta)[j], reinterpret_cast<const float4*>(grad)[j], zero, zero, zero,
           make_float4(1.0f, 1.0f, 1.0f, 1.0f), zero};
  if (const float* s = step.first_state()) e.s1 = reinterpret_cast<const float4*>(s)[j];
  if (const float* s = step.second_state()) e.s2 = reinterpret_cast<const float4*>(s)[j];
  if (p.anchor) e.anchor = reinterpret_cast<const float4*>(p.anchor)[j];
  if (p.omega) e.omega = reinterpret_cast<const float4*>(p.omega)[j];
  if (p.path_integral) e.path = reinterpret_cast<const float4*>(p.path_integral)[j];
  return e;
}

__device__ inline Entry lane_of(Entry4& e, int k) {
  return {lane(e.t, k), lane(e.g, k), lane(e.s1, k), lane(e.s2, k), lane(e.anchor, k), lane(e.omega, k), lane(e.path, k)};
}

__device__ inline void set_lane(Entry4& e, int k, const Entry& x) {
  lane(e.t, k) = x.t;
  lane(e.s1, k) = x.s1;
  lane(e.s2, k) = x.s2;
  lane(e.path, k) = x.path;
}

template <typename Step>
__device__ inline void store_entry4(int64_t j, float* theta, const Step& step, const PenaltyArgs& p, const Entry4& e) {
  reinterpret_cast<float4*>(theta)[j] = e.t;
  if (float* s = step.first_state()) reinterpret_cast<float4*>(s)[j] = e.s1;
  if (float* s = step.second_state()) reinterpret_cast<float4*>(s)[j] = e.s2;
  if (p.path_integral) reinterpret_cast<float4*>(p.path_integral)[j] = e.path;
}

__device__ inline void add_block_value(double partial, const PenaltyArgs& p) {
  const double total = block_sum(partial);
  if (threadIdx.x == 0 && total != 0.0) atomicAdd(p.value, static_cast<double>(p.lambda) * total);
}

template <typename Step>
__device__ inline void load_step_scalars(Step& step, float& lr) {
  if (step.scalars) {
    step.load_scalars();
    lr = step.scalars[0];
  }
}

__device__ inline bool selected_bit(const uint32_t* bits, int64_t i) { return (bits[i >> 5] >> (i & 31)) & 1u; }

// Mask All (kBits false) or Elements (kBits true), one entry per thread and iteration: grid-stride
// over all n entries. With kValue, every entry (selected or not) adds its penalty term before the step.
template <typename Step, bool kBits, bool kValue>
__global__ void update_dense_kernel(int64_t n, float* __restrict__ theta, const float* __restrict__ grad, Step step,
                                    float lr, const uint32_t* __restrict__ bits, PenaltyArgs p) {
  load_step_scalars(step, lr);
  double partial = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    if (kBits && !selected_bit(bits, i)) {
      if (kValue) partial += penalty_term(load_penalty_operands(i, theta, p));
      continue;
    }
    Entry e = load_entry(i, theta, grad, step, p);
    if (kValue) partial += penalty_term(e);
    update_entry(step, lr, p, e);
    store_entry(i, theta, step, p, e);
  }
  if (kValue) add_block_value(partial, p);
}

// The same with four entries per thread and iteration through 16-byte loads (every array 16-byte
// aligned): a quarter of the memory instructions. The last n % 4 entries go one per thread. With
// an element mask, a group with no selected entry is skipped (unless kValue reads it) and one with
// some is written back lane by lane, so that masked-out entries are never written.
template <typename Step, bool kBits, bool kValue>
__global__ void update_dense4_kernel(int64_t n, float* __restrict__ theta, const float* __restrict__ grad, Step step,
                                     float lr, const uint32_t* __restrict__ bits, PenaltyArgs p) {
  load_step_scalars(step, lr);
  const int64_t n4 = n / 4;
  double partial = 0.0;
  for (int64_t j = first_index(); j < n4; j += grid_stride()) {
    const unsigned nibble = kBits ? (bits[j >> 3] >> ((j & 7) * 4)) & 0xFu : 0xFu;
    if (nibble == 0u && !kValue) continue;
    Entry4 e = load_entry4(j, theta, grad, step, p);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      Entry x = lane_of(e, k);
      if (kValue) partial += penalty_term(x);
      if ((nibble >> k) & 1u) {
        update_entry(step, lr, p, x);
        set_lane(e, k, x);
      }
    }
    if (nibble == 0xFu) {
      store_entry4(j, theta, step, p, e);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if ((nibble >> k) & 1u) store_entry(4 * j + k, theta, step, p, lane_of(e, k));
    }
  }
  const int64_t i = 4 * n4 + first_index();  // the tail
  if (i < n) {
    Entry e = load_entry(i, theta, grad, step, p);
    if (kValue) partial += penalty_term(e);
    if (!kBits || selected_bit(bits, i)) {
      update_entry(step, lr, p, e);
      store_entry(i, theta, step, p, e);
    }
  }
  if (kValue) add_block_value(partial, p);
}

// Mask Rows: grid-stride over the `total` = row_count · row_length selected entries only
// (kWidth 1), or over their groups of four when row_length % 4 == 0 and every array is 16-byte
// aligned (kWidth 4: `total` counts groups, `row_length` is in groups). Index math in 32 bits when
// it fits (a 64-bit division per entry costs more than the load).
template <typename Step, typename Index, int kWidth>
__global__ void update_rows_kernel(int64_t total, float* __restrict__ theta, const float* __restrict__ grad, Step step,
                                   float lr, const int64_t* __restrict__ rows, int64_t row_length, PenaltyArgs p) {
  load_step_scalars(step, lr);
  const Index length = static_cast<Index>(row_length);
  for (int64_t u = first_index(); u < total; u += grid_stride()) {
    const Index local = static_cast<Index>(u);
    const Index r = local / length;
    const int64_t i = rows[r] * row_length + static_cast<int64_t>(local - r * length);
    if constexpr (kWidth == 4) {
      Entry4 e = load_entry4(i, theta, grad, step, p);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        Entry x = lane_of(e, k);
        update_entry(step, lr, p, x);
        set_lane(e, k, x);
      }
      store_entry4(i, theta, step, p, e);
    } else {
      Entry e = load_entry(i, theta, grad, step, p);
      update_entry(step, lr, p, e);
      store_entry(i, theta, step, p, e);
    }
  }
}

__global__ void penalty_value_kernel(int64_t n, const float* __restrict__ theta, PenaltyArgs p) {
  double partial = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) partial += penalty_term(load_penalty_operands(i, theta, p));
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

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Whether every array the update touches allows 16-byte access.
bool all_aligned16(const float* theta, const float* grad, const float* s1, const float* s2, const PenaltyArgs& p) {
  for (const void* ptr : {static_cast<const void*>(theta), static_cast<const void*>(grad), static_cast<const void*>(s1),
                          static_cast<const void*>(s2), static_cast<const void*>(p.anchor),
                          static_cast<const void*>(p.omega), static_cast<const void*>(p.path_integral)})
    if (ptr && !aligned16(ptr)) return false;
  return true;
}

template <typename Kernel, typename... Args>
void launch_over(int64_t work_items, cudaStream_t stream, Kernel kernel, Args... args) {
  if (work_items <= 0) return;
  kernel<<<grid_for(work_items), kBlockSize, 0, stream>>>(args...);
  NNR_CUDA_CHECK_LAUNCH();
}

template <typename Step, bool kBits>
void run_dense(bool vector, bool fused_value, float* theta, const float* grad, int64_t n, const Step& step, float lr,
               const uint32_t* bits, const PenaltyArgs& p, cudaStream_t stream) {
  if (vector) {
    // One thread per group of four; the n % 4 tail entries take the first threads' tail slot.
    const int64_t items = std::max<int64_t>(n / 4, n % 4);
    if (fused_value)
      launch_over(items, stream, update_dense4_kernel<Step, kBits, true>, n, theta, grad, step, lr, bits, p);
    else
      launch_over(items, stream, update_dense4_kernel<Step, kBits, false>, n, theta, grad, step, lr, bits, p);
  } else if (fused_value) {
    launch_1d(n, stream, update_dense_kernel<Step, kBits, true>, theta, grad, step, lr, bits, p);
  } else {
    launch_1d(n, stream, update_dense_kernel<Step, kBits, false>, theta, grad, step, lr, bits, p);
  }
}

template <typename Step, int kWidth>
void run_rows(float* theta, const float* grad, const Step& step, float lr, const MaskArgs& mask, const PenaltyArgs& p,
              cudaStream_t stream) {
  const int64_t length = mask.row_length / kWidth, total = mask.row_count * length;
  if (total <= int64_t{0xffffffff})
    launch_1d(total, stream, update_rows_kernel<Step, uint32_t, kWidth>, theta, grad, step, lr, mask.rows, length, p);
  else
    launch_1d(total, stream, update_rows_kernel<Step, int64_t, kWidth>, theta, grad, step, lr, mask.rows, length, p);
}

template <typename Step>
void run_update(float* theta, const float* grad, const float* s1, const float* s2, int64_t n, const Step& step,
                float lr, const MaskArgs& mask, const PenaltyArgs& p, UpdatePath path, cudaStream_t stream) {
  const bool fused_value = prepare_value(theta, n, mask, p, stream);
  const bool vector = path != UpdatePath::Scalar && all_aligned16(theta, grad, s1, s2, p);
  if (path == UpdatePath::Vector4 && !vector)
    throw InvalidArgument("[masked_update] UpdatePath::Vector4 needs every array 16-byte aligned");
  switch (mask.kind) {
    case MaskKind::All:
      run_dense<Step, false>(vector, fused_value, theta, grad, n, step, lr, nullptr, p, stream);
      break;
    case MaskKind::Elements:
      run_dense<Step, true>(vector, fused_value, theta, grad, n, step, lr, mask.bits, p, stream);
      break;
    case MaskKind::Rows:
      if (vector && mask.row_length % 4 == 0)
        run_rows<Step, 4>(theta, grad, step, lr, mask, p, stream);
      else if (path == UpdatePath::Vector4)
        throw InvalidArgument("[masked_update] UpdatePath::Vector4 needs a row length divisible by 4, got " +
                              std::to_string(mask.row_length));
      else
        run_rows<Step, 1>(theta, grad, step, lr, mask, p, stream);
      break;
  }
}

}  // namespace

void sgd_update(float* theta, const float* grad, float* velocity, int64_t n, const SgdArgs& c, const MaskArgs& mask,
                const PenaltyArgs& penalty, cudaStream_t stream, UpdatePath path) {
  check_args("sgd_update", theta, grad, n, mask, penalty);
  if (c.momentum != 0.0f && n > 0 && !velocity)
    throw InvalidArgument("[sgd_update] momentum " + std::to_string(c.momentum) + " needs a velocity buffer");
  const SgdStep step{c.lr, c.momentum, c.weight_decay, c.nesterov, velocity, c.scalars};
  run_update(theta, grad, c.momentum != 0.0f ? velocity : nullptr, nullptr, n, step, c.lr, mask, penalty, path, stream);
}

void adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step, const AdamArgs& c,
                 const MaskArgs& mask, const PenaltyArgs& penalty, cudaStream_t stream, UpdatePath path) {
  check_args("adam_update", theta, grad, n, mask, penalty);
  if (n > 0 && (!m || !v)) throw InvalidArgument("[adam_update] null moment buffer");
  if (step < 1) throw InvalidArgument("[adam_update] step must be >= 1, got " + std::to_string(step));
  float scalars[kStepScalarCount];
  step_scalars(c, step, scalars);
  const AdamStep adam{c.beta1, c.beta2, c.eps, c.weight_decay, scalars[1], scalars[2], m, v, c.scalars};
  run_update(theta, grad, m, v, n, adam, c.lr, mask, penalty, path, stream);
}

void penalty_value(const float* theta, int64_t n, const PenaltyArgs& p, cudaStream_t stream) {
  if (!p.want_value) return;
  if (!p.value) throw InvalidArgument("[penalty_value] want_value needs a device double in PenaltyArgs::value");
  NNR_CUDA_CHECK(cudaMemsetAsync(p.value, 0, sizeof(double), stream));
  if (p.anchor) launch_1d(n, stream, penalty_value_kernel, theta, p);
}

}  // namespace nnr::kernels
