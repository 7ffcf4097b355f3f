#pragma once
// Denormal floats (magnitudes below 1.2e-38) cost tens to hundreds of cycles an operation on x86
// CPUs, and training drifts into them: Adam's second moments and the gradients of weights that
// stop mattering decay towards 0. nnr train's MLP ran its later epochs at 63-68 thousand
// samples/s, its first at 88 thousand, before nnr flushed them; flushed, its marginal epoch is
// 0.68x (bench/results/denormals.json). So every thread nnr computes on
// flushes them to zero (x86 MXCSR FTZ and DAZ: results that would be denormal become 0, denormal
// inputs read as 0), the mode GPUs' fast math and PyTorch's torch.set_flush_denormal(True) offer:
//   * the thread that loads nnr sets it before main (NNR_DENORMALS=keep leaves it off), and
//     threads started later inherit it, as every Linux thread inherits its creator's mode;
//   * each parallel loop (kernels/thread_pool.h) runs its workers' shares in its caller's mode.
// Elsewhere than x86 these are no-ops (flush_denormals() stays false).
#include <cstdint>

namespace nnr::kernels {

// The calling thread's mode. Returns false where the CPU has no such mode (nothing changed).
bool set_flush_denormals(bool on);
bool flush_denormals();

// The calling thread's floating-point control bits that the pool hands to its workers (opaque).
uint32_t float_mode();
void set_float_mode(uint32_t mode);

// NNR_DENORMALS's effect at load: "keep" (denormals computed as IEEE says) or "flush" (the default).
const char* denormals_at_load();

}  // namespace nnr::kernels
