#include "engine/core/captured_step.h"

#include <cstdio>
#include <exception>
#include <string>

#include "engine/core/error.h"

#ifdef NNR_WITH_CUDA
#include "kernels/device_memory.h"
#include "kernels/graph.h"
#endif

namespace nnr {

#ifdef NNR_WITH_CUDA

struct PinnedHostBuffer::Impl {
  kernels::PinnedBuffer buffer;
};

PinnedHostBuffer::PinnedHostBuffer(size_t bytes) : impl_(std::make_unique<Impl>()) {
  impl_->buffer = kernels::PinnedBuffer(bytes);
}
void* PinnedHostBuffer::data() { return impl_ ? impl_->buffer.data() : nullptr; }
size_t PinnedHostBuffer::bytes() const { return impl_ ? impl_->buffer.bytes() : 0; }

struct CapturedStep::Impl {
  kernels::CapturedGraph graph;
  kernels::CachingAllocator::PoolId pool = 0;
};

void CapturedStep::record(const std::function<void()>& work) {
  clear();
  kernels::CachingAllocator& allocator = ctx_.allocator();
  const cudaStream_t stream = ctx_.stream();
  const kernels::CachingAllocator::PoolId pool = allocator.begin_capture_pool();
  try {
    kernels::CapturedGraph::begin_capture(stream);
    work();
    allocator.end_capture_pool();
    impl_->graph = kernels::CapturedGraph::end_capture(stream);
  } catch (const std::exception& e) {
    kernels::CapturedGraph::abandon_capture(stream);
    allocator.end_capture_pool();
    allocator.release_pool(pool);  // nothing recorded will run
    throw Error(std::string("[cuda-graph] the step could not be recorded as a CUDA graph: ") + e.what());
  }
  impl_->pool = pool;
}

void CapturedStep::replay() { impl_->graph.launch(ctx_.stream()); }

bool CapturedStep::recorded() const { return !impl_->graph.empty(); }

void CapturedStep::clear() noexcept {
  if (impl_->graph.empty() && !impl_->pool) return;
  // A replay may still be running: its graph and pool must outlive it.
  const cudaError_t status = cudaStreamSynchronize(ctx_.stream());
  if (status != cudaSuccess) std::fprintf(stderr, "[cuda-graph] stream sync failed: %s\n", cudaGetErrorString(status));
  impl_->graph = kernels::CapturedGraph();
  if (impl_->pool) ctx_.allocator().release_pool(impl_->pool);
  impl_->pool = 0;
}

#else  // built without CUDA: neither can be made, so the members below are unreachable.

namespace {
[[noreturn]] void throw_no_cuda() { throw Error("[context] " + Context::why_cuda_unavailable()); }
}  // namespace

struct PinnedHostBuffer::Impl {};
PinnedHostBuffer::PinnedHostBuffer(size_t) { throw_no_cuda(); }
void* PinnedHostBuffer::data() { return nullptr; }
size_t PinnedHostBuffer::bytes() const { return 0; }

struct CapturedStep::Impl {};
void CapturedStep::record(const std::function<void()>&) { throw_no_cuda(); }
void CapturedStep::replay() { throw_no_cuda(); }
bool CapturedStep::recorded() const { return false; }
void CapturedStep::clear() noexcept {}

#endif

PinnedHostBuffer::PinnedHostBuffer() = default;
PinnedHostBuffer::~PinnedHostBuffer() = default;
PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&&) noexcept = default;
PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&&) noexcept = default;

CapturedStep::CapturedStep(Context& ctx) : impl_(std::make_unique<Impl>()), ctx_(ctx) {}
CapturedStep::~CapturedStep() { clear(); }

}  // namespace nnr
