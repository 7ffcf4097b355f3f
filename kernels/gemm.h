#pragma once
// GEMM on row-major float matrices: C[m, n] = alpha · op(A) · op(B) + beta · C, where A is [m, k]
// ([k, m] when transpose_a) and B is [k, n] ([n, k] when transpose_b). With beta == 0, C's previous
// contents are ignored (it may be uninitialised).
//   gemm_cpu  the CPU reference (kernels/gemm.cpp): Eigen, C split into blocks across threads.
//   gemm      the CUDA launcher (kernels/gemm.cu): cuBLAS on the handle's stream, fp32 without
//             TF32, so results match gemm_cpu to fp32 rounding (kernels/cuda/blas_handle.h).
#include <cstdint>

namespace nnr::kernels {

class BlasHandle;

void gemm_cpu(const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m, int64_t n,
              int64_t k, float alpha, float beta);

void gemm(BlasHandle& blas, const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m,
          int64_t n, int64_t k, float alpha, float beta);

}  // namespace nnr::kernels
