#pragma once
// Context: everything a CUDA tensor and a CUDA op need, owned in one place and passed explicitly
// (there are no global handles). It holds the device, the one stream all engine work runs on, a
// CachingAllocator for tensor memory, the cuBLAS handle and (lazily) the cuDNN handle.
//
// Lifetime: a Context must outlive every tensor allocated through it (their memory returns to its
// allocator). One stream: the allocator may hand a freed block out again at once, which is safe
// because every kernel queues on this stream behind the previous user's (kernels/cuda/device_memory.h).
//
// The CUDA objects belong to the CUDA backend (engine/core/backend.h), loaded on the first Context:
// without it (a build without CUDA, or the CUDA libraries missing) constructing one throws
// nnr::Error saying why; cuda_available() says in advance whether it would succeed.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda_stream.h"

namespace nnr {

class DeviceBackend;
namespace kernels {
class CachingAllocator;
class BlasHandle;
class DnnHandle;
}  // namespace kernels

class Context {
 public:
  // Binds device `device_index`, creates the stream and the cuBLAS handle. Throws nnr::Error
  // naming the reason when this build has no CUDA or the device cannot be used.
  explicit Context(int device_index = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // Empty when the CUDA backend loads and device 0 is usable (compute capability >= 8.0), else why not.
  static std::string why_cuda_unavailable();
  static bool cuda_available() { return why_cuda_unavailable().empty(); }

  int device_index() const { return device_index_; }
  // The device's name as the driver reports it (cudaDeviceProp::name), e.g. for benchmark output.
  std::string gpu_name() const;
  // Waits for all work queued on the stream (e.g. before timing, or before reading pinned memory).
  void synchronize();

  // Device memory from the caching allocator (nullptr for 0 bytes) and its return. Used by Tensor.
  float* allocate_floats(size_t bytes);
  void deallocate_floats(float* block, size_t bytes) noexcept;
  // Stream-ordered byte copies and clears. The host-side copies return once the host buffer may
  // be reused (upload) or holds the data (download).
  void upload(void* device_dst, const void* host_src, size_t bytes);
  void download(void* host_dst, const void* device_src, size_t bytes);
  void copy_on_device(void* device_dst, const void* device_src, size_t bytes);
  // How many times a library workspace that queued work may point into (cuDNN's) was
  // reallocated so far: a recorded CUDA graph is stale once this changes.
  int64_t workspace_generation() const;
  // Copies from / to page-locked host memory (PinnedHostBuffer, engine/core/captured_step.h) that
  // only queue: the host buffer is read or filled when the stream reaches the copy (inside a
  // CUDA graph: at every replay), so the host must leave it alone until then.
  void queue_upload(void* device_dst, const void* pinned_src, size_t bytes);
  void queue_download(void* pinned_dst, const void* device_src, size_t bytes);
  void zero_bytes(void* device_dst, size_t bytes);

  cudaStream_t stream() const;
  kernels::CachingAllocator& allocator();
  kernels::BlasHandle& blas();
  // Created on first use: conv-free models never pay for cuDNN's initialisation.
  kernels::DnnHandle& dnn();
  // The device's backend (the ops on its pointers, and everything above).
  DeviceBackend& backend() { return *backend_; }

 private:
  std::unique_ptr<DeviceBackend> backend_;  // from the CUDA backend library
  int device_index_ = 0;
};

}  // namespace nnr
