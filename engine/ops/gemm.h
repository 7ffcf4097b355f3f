#pragma once
// GEMM on 2-D row-major tensors: C = alpha * op(A) * op(B) + beta * C, op = transpose or not.
// CPU through Eigen (multi-threaded by nnr::set_num_threads). C must already have the result
// shape; with beta == 0 its previous contents are ignored (it may be uninitialised).
#include "engine/core/tensor.h"

namespace nnr {

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c, float alpha = 1.0f,
          float beta = 0.0f);

// The same on raw row-major CPU buffers: a is [m, k] (or [k, m] when transposed), b is [k, n]
// (or [n, k]), c is [m, n]. Used by ops that GEMM on slices of a tensor (conv per sample).
void gemm_cpu(const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m, int64_t n,
              int64_t k, float alpha, float beta);

}  // namespace nnr
