#include "engine/core/context.h"

#include "engine/core/backend.h"
#include "engine/core/error.h"

namespace nnr {

std::string Context::why_cuda_unavailable() {
  std::string why;
  DeviceLibrary* library = cuda_library(&why);
  return library ? library->why_unavailable() : why;
}

Context::Context(int device_index) : device_index_(device_index) {
  std::string why;
  DeviceLibrary* library = cuda_library(&why);
  if (library) why = library->why_unavailable();
  if (!why.empty()) throw Error("[context] " + why);
  backend_ = library->open(device_index);
}

Context::~Context() = default;

void Context::synchronize() { backend_->synchronize(); }
std::string Context::gpu_name() const { return backend_->gpu_name(); }
float* Context::allocate_floats(size_t bytes) { return backend_->allocate_floats(bytes); }
void Context::deallocate_floats(float* block, size_t bytes) noexcept { backend_->deallocate_floats(block, bytes); }
void Context::upload(void* device_dst, const void* host_src, size_t bytes) {
  backend_->upload(device_dst, host_src, bytes);
}
void Context::download(void* host_dst, const void* device_src, size_t bytes) {
  backend_->download(host_dst, device_src, bytes);
}
void Context::copy_on_device(void* device_dst, const void* device_src, size_t bytes) {
  backend_->copy_on_device(device_dst, device_src, bytes);
}
void Context::queue_upload(void* device_dst, const void* pinned_src, size_t bytes) {
  backend_->queue_upload(device_dst, pinned_src, bytes);
}
void Context::queue_download(void* pinned_dst, const void* device_src, size_t bytes) {
  backend_->queue_download(pinned_dst, device_src, bytes);
}
void Context::zero_bytes(void* device_dst, size_t bytes) { backend_->zero_bytes(device_dst, bytes); }
int64_t Context::workspace_generation() const { return backend_->workspace_generation(); }

cudaStream_t Context::stream() const { return backend_->stream(); }
kernels::CachingAllocator& Context::allocator() { return backend_->allocator(); }
kernels::BlasHandle& Context::blas() { return backend_->blas(); }
kernels::DnnHandle& Context::dnn() { return backend_->dnn(); }

}  // namespace nnr
