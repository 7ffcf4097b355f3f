#pragma once
// GEMM on 2-D row-major tensors: C = alpha * op(A) * op(B) + beta * C, op = transpose or not.
// CPU through Eigen (multi-threaded by nnr::set_num_threads); CUDA through cuBLAS on the tensors'
// Context (fp32, no TF32, so results match the CPU to fp32 rounding). C must already have the result
// shape; with beta == 0 its previous contents are ignored (it may be uninitialised).
#include "engine/core/tensor.h"
#include "kernels/gemm.h"

namespace nnr {

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c, float alpha = 1.0f,
          float beta = 0.0f);

// The same on raw buffers that live on `where`: host pointers for the CPU, device pointers of
// where.context for CUDA; a is [m, k] (or [k, m] when transposed), b is [k, n] (or [n, k]), c is
// [m, n]. For layers that GEMM on reshaped inputs.
void gemm(const Placement& where, const float* a, bool transpose_a, const float* b, bool transpose_b, float* c,
          int64_t m, int64_t n, int64_t k, float alpha, float beta);

// The CPU reference on raw host buffers (kernels/gemm.h), for code that GEMMs on slices of a tensor.
using kernels::gemm_cpu;

}  // namespace nnr
