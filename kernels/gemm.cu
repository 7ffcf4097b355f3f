// GEMM via cuBLAS: row-major C = alpha·op(A)·op(B) + beta·C through the column-major trick.
// A row-major [r, c] matrix is the column-major [c, r] matrix with the same bytes, so
// C^T = op(B)^T · op(A)^T is computed by cublasSgemm with the operands swapped:
//   cublasSgemm(opB, opA, n, m, k, B, ldb, A, lda, C, ldc = n)
// with lda = (transpose_a ? m : k), ldb = (transpose_b ? k : n) (the row lengths as stored).
// Accumulation: cuBLAS's own (fp32 FMA; TF32 tensor cores only when allowed). No atomics.
#include "kernels/gemm.h"

#include "kernels/cuda/blas_handle.h"

#include <climits>
#include <cstdio>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace nnr::kernels {
namespace {

__global__ void scale_kernel(int64_t n, float* __restrict__ c, float beta) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) c[i] *= beta;
}

}  // namespace

BlasHandle::BlasHandle(cudaStream_t stream, bool allow_tf32, size_t workspace_bytes)
    : BlasHandle(stream, DeviceBuffer(workspace_bytes), allow_tf32) {}

BlasHandle::BlasHandle(cudaStream_t stream, CachingAllocator& allocator, bool allow_tf32, size_t workspace_bytes)
    : BlasHandle(stream, DeviceBuffer(workspace_bytes, allocator), allow_tf32) {}

BlasHandle::BlasHandle(cudaStream_t stream, DeviceBuffer workspace, bool allow_tf32)
    : stream_(stream), workspace_(std::move(workspace)) {
  NNR_CUBLAS_CHECK(cublasCreate(&handle_));
  try {
    NNR_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
    if (!workspace_.empty()) NNR_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()));
    NNR_CUBLAS_CHECK(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST));
    set_allow_tf32(allow_tf32);
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

BlasHandle::~BlasHandle() {
  if (!handle_) return;
  const cublasStatus_t status = cublasDestroy(handle_);
  if (status != CUBLAS_STATUS_SUCCESS)
    std::fprintf(stderr, "[BlasHandle] cublasDestroy failed: %s\n", cublasGetStatusString(status));
}

void BlasHandle::set_stream(cudaStream_t stream) {
  NNR_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  // cublasSetStream resets the workspace to cuBLAS's own pool; give it ours back.
  if (!workspace_.empty()) NNR_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()));
  stream_ = stream;
}

void BlasHandle::set_allow_tf32(bool allow) {
  // CUBLAS_DEFAULT_MATH never uses TF32 for fp32 GEMM (only CUBLAS_TF32_TENSOR_OP_MATH does, or
  // the NVIDIA_TF32_OVERRIDE environment variable, which tests must not set).
  NNR_CUBLAS_CHECK(cublasSetMathMode(handle_, allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

void gemm(BlasHandle& blas, const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m,
          int64_t n, int64_t k, float alpha, float beta) {
  if (m < 0 || n < 0 || k < 0 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
    throw InvalidArgument("[gemm] extents must lie in [0, 2^31): m = " + std::to_string(m) + ", n = " +
                          std::to_string(n) + ", k = " + std::to_string(k));
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // C = beta·C, exactly as gemm_cpu (zeros when beta == 0, whatever C held), without relying
    // on how cuBLAS treats an empty inner dimension. C is contiguous (ldc = n).
    if (beta == 0.0f)
      NNR_CUDA_CHECK(cudaMemsetAsync(c, 0, static_cast<size_t>(m * n) * sizeof(float), blas.stream()));
    else if (beta != 1.0f)
      launch_1d(m * n, blas.stream(), scale_kernel, c, beta);
    return;
  }
  const int lda = static_cast<int>(transpose_a ? m : k);
  const int ldb = static_cast<int>(transpose_b ? k : n);
  NNR_CUBLAS_CHECK(cublasSgemm(blas.get(), transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                               static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                               ldb, a, lda, &beta, c, static_cast<int>(n)));
}

}  // namespace nnr::kernels
