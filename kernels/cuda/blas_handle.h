#pragma once
// GEMM through cuBLAS on row-major float matrices. One BlasHandle per device context: it owns
// the cuBLAS handle, binds it to the engine's stream and gives it a fixed workspace (so cuBLAS
// allocates nothing per call), borrowed from the context's CachingAllocator when given one (so
// the allocator's out-of-memory retry, its bound and its counters see it), else cudaMalloc'd.
// TF32 is off unless asked for: fp32 results then match the CPU reference (kernels/gemm.h
// gemm_cpu) to fp32 rounding. Defined in kernels/gemm.cu; the launcher is kernels::gemm (kernels/gemm.h).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device_memory.h"

namespace nnr::kernels {

class BlasHandle {
 public:
  // 32 MiB is what cuBLAS recommends for Hopper; smaller workspaces only limit kernel choice.
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  explicit BlasHandle(cudaStream_t stream, bool allow_tf32 = false, size_t workspace_bytes = kDefaultWorkspaceBytes);
  // The workspace comes from `allocator`, which must outlive the handle.
  BlasHandle(cudaStream_t stream, CachingAllocator& allocator, bool allow_tf32 = false,
             size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;

  void set_stream(cudaStream_t stream);
  void set_allow_tf32(bool allow);
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t get() const { return handle_; }
  size_t workspace_bytes() const { return workspace_.bytes(); }

 private:
  BlasHandle(cudaStream_t stream, DeviceBuffer workspace, bool allow_tf32);

  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace nnr::kernels
