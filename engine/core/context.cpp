#include "engine/core/context.h"

#include "engine/core/error.h"

#ifdef NNR_WITH_CUDA
#include "kernels/blas.h"
#include "kernels/cuda_check.h"
#include "kernels/device_memory.h"
#ifdef NNR_WITH_CUDNN
#include "kernels/dnn.h"
#endif
#endif

#include <cstdio>

namespace nnr {

#ifdef NNR_WITH_CUDA

namespace {
constexpr int kMinComputeMajor = 8;  // nnr_kernels carries sm_80 / sm_90 code and compute_90 PTX
}

// Members are destroyed in reverse order: the handles (which may hold allocator memory) go
// before the allocator, and everything before the stream.
struct Context::Impl {
  cudaStream_t stream = nullptr;
  std::unique_ptr<kernels::CachingAllocator> allocator;
  std::unique_ptr<kernels::BlasHandle> blas;
#ifdef NNR_WITH_CUDNN
  std::unique_ptr<kernels::DnnHandle> dnn;
#endif
  ~Impl() {
#ifdef NNR_WITH_CUDNN
    dnn.reset();
#endif
    blas.reset();
    if (stream) {
      const cudaError_t status = cudaStreamSynchronize(stream);
      if (status != cudaSuccess) std::fprintf(stderr, "[context] stream sync failed: %s\n", cudaGetErrorString(status));
    }
    allocator.reset();
    if (stream) cudaStreamDestroy(stream);
  }
};

std::string Context::why_cuda_unavailable() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (count == 0) return "no usable CUDA device (0 devices)";
  cudaDeviceProp prop{};
  status = cudaGetDeviceProperties(&prop, 0);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (prop.major < kMinComputeMajor)
    return std::string("no usable CUDA device (") + prop.name + " has compute capability " +
           std::to_string(prop.major) + "." + std::to_string(prop.minor) + "; nnr needs 8.0 or newer)";
  status = cudaFree(nullptr);  // creates the CUDA context: fails when the device is busy or broken
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  return {};
}

Context::Context(int device_index) : impl_(std::make_unique<Impl>()), device_index_(device_index) {
  const std::string why = why_cuda_unavailable();
  if (!why.empty()) throw Error("[context] " + why);
  NNR_CUDA_CHECK(cudaSetDevice(device_index));
  NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  impl_->allocator = std::make_unique<kernels::CachingAllocator>();
  impl_->blas = std::make_unique<kernels::BlasHandle>(impl_->stream, *impl_->allocator);
}

Context::~Context() = default;

void Context::synchronize() { NNR_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

std::string Context::gpu_name() const {
  cudaDeviceProp prop{};
  NNR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index_));
  return prop.name;
}

float* Context::allocate_floats(size_t bytes) { return static_cast<float*>(impl_->allocator->allocate(bytes)); }

void Context::deallocate_floats(float* block, size_t bytes) noexcept { impl_->allocator->deallocate(block, bytes); }

void Context::upload(void* device_dst, const void* host_src, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, impl_->stream));
  // Pageable host memory: the caller may reuse it as soon as we return, so wait for the copy.
  NNR_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void Context::download(void* host_dst, const void* device_src, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, impl_->stream));
  NNR_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void Context::copy_on_device(void* device_dst, const void* device_src, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, impl_->stream));
}

void Context::queue_upload(void* device_dst, const void* pinned_src, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(device_dst, pinned_src, bytes, cudaMemcpyHostToDevice, impl_->stream));
}

void Context::queue_download(void* pinned_dst, const void* device_src, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(pinned_dst, device_src, bytes, cudaMemcpyDeviceToHost, impl_->stream));
}

void Context::zero_bytes(void* device_dst, size_t bytes) {
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemsetAsync(device_dst, 0, bytes, impl_->stream));
}

int64_t Context::workspace_generation() const {
#ifdef NNR_WITH_CUDNN
  return impl_->dnn ? impl_->dnn->workspace_allocations() : 0;
#else
  return 0;
#endif
}

cudaStream_t Context::stream() const { return impl_->stream; }
kernels::CachingAllocator& Context::allocator() { return *impl_->allocator; }
kernels::BlasHandle& Context::blas() { return *impl_->blas; }
#ifdef NNR_WITH_CUDNN
kernels::DnnHandle& Context::dnn() {
  if (!impl_->dnn) impl_->dnn = std::make_unique<kernels::DnnHandle>(impl_->stream, *impl_->allocator);
  return *impl_->dnn;
}
#endif

#else  // built without CUDA: a Context cannot exist, so the members below are unreachable.

struct Context::Impl {};

namespace {
[[noreturn]] void throw_no_cuda() { throw Error("[context] nnr was built without CUDA (configure with NNR_CUDA=ON)"); }
}  // namespace

std::string Context::why_cuda_unavailable() { return "nnr was built without CUDA (configure with NNR_CUDA=ON)"; }
Context::Context(int device_index) : device_index_(device_index) { throw_no_cuda(); }
Context::~Context() = default;
void Context::synchronize() { throw_no_cuda(); }
std::string Context::gpu_name() const { throw_no_cuda(); }
float* Context::allocate_floats(size_t) { throw_no_cuda(); }
void Context::deallocate_floats(float*, size_t) noexcept {}
void Context::upload(void*, const void*, size_t) { throw_no_cuda(); }
void Context::download(void*, const void*, size_t) { throw_no_cuda(); }
void Context::copy_on_device(void*, const void*, size_t) { throw_no_cuda(); }
int64_t Context::workspace_generation() const { throw_no_cuda(); }
void Context::queue_upload(void*, const void*, size_t) { throw_no_cuda(); }
void Context::queue_download(void*, const void*, size_t) { throw_no_cuda(); }
void Context::zero_bytes(void*, size_t) { throw_no_cuda(); }

#endif

}  // namespace nnr
