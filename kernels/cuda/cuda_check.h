#pragma once
// Checked CUDA, cuBLAS and cuDNN calls. Every call into those libraries goes through one of the
// macros below; a failure throws nnr::CudaError whose message names the call, the file:line and
// the library's own message, e.g.
//   [cuda] cudaMalloc(&p, bytes) failed at kernels/device_memory.cu:41: out of memory
// The macros only throw (no hidden return); destructors must not use them (they log instead).
// NNR_CUBLAS_CHECK / NNR_CUDNN_CHECK need cublas_v2.h / cudnn.h included at the point of use.
#include <cuda_runtime_api.h>

#include "engine/core/error.h"

namespace nnr {

class CudaError : public Error {
 public:
  using Error::Error;
};

namespace kernels {

// Builds the message and throws CudaError; `library` is "cuda", "cublas" or "cudnn".
[[noreturn]] void throw_cuda_error(const char* library, const char* expression, const char* message,
                                   const char* file, int line);

}  // namespace kernels
}  // namespace nnr

#define NNR_CUDA_CHECK(expr)                                                                           \
  do {                                                                                                 \
    const cudaError_t nnr_status_ = (expr);                                                            \
    if (nnr_status_ != cudaSuccess)                                                                    \
      ::nnr::kernels::throw_cuda_error("cuda", #expr, cudaGetErrorString(nnr_status_), __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define NNR_CUDA_CHECK_LAUNCH() NNR_CUDA_CHECK(cudaGetLastError())

#define NNR_CUBLAS_CHECK(expr)                                                                           \
  do {                                                                                                   \
    const cublasStatus_t nnr_status_ = (expr);                                                           \
    if (nnr_status_ != CUBLAS_STATUS_SUCCESS)                                                            \
      ::nnr::kernels::throw_cuda_error("cublas", #expr, cublasGetStatusString(nnr_status_), __FILE__, __LINE__); \
  } while (0)

#define NNR_CUDNN_CHECK(expr)                                                                         \
  do {                                                                                                \
    const cudnnStatus_t nnr_status_ = (expr);                                                         \
    if (nnr_status_ != CUDNN_STATUS_SUCCESS)                                                          \
      ::nnr::kernels::throw_cuda_error("cudnn", #expr, cudnnGetErrorString(nnr_status_), __FILE__, __LINE__); \
  } while (0)
