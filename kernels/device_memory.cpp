#include "kernels/device_memory.h"

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>

#include "kernels/cuda_check.h"

namespace nnr::kernels {

namespace {

// cudaMalloc is not queued on a stream, so an open stream capture in the default (thread-local)
// mode rejects it as unsafe and fails. A pool block is allocated outside the captured work on
// purpose (the graph only uses its address), so the call runs in relaxed mode.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

void free_or_log(void* block, const char* where) noexcept {
  const cudaError_t status = cudaFree(block);
  if (status != cudaSuccess) std::fprintf(stderr, "[CachingAllocator] cudaFree failed %s: %s\n", where, cudaGetErrorString(status));
}

}  // namespace

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stats_.bytes_in_use != 0)
    std::fprintf(stderr, "[CachingAllocator] destroyed with %lld bytes still in use\n",
                 static_cast<long long>(stats_.bytes_in_use));
  for (auto& bin : free_blocks_)
    for (void* block : bin.second) free_or_log(block, "in destructor");
  for (auto& pool : pool_free_blocks_)
    for (auto& bin : pool.second)
      for (void* block : bin.second) free_or_log(block, "in destructor");
}

void* CachingAllocator::take_from(Bins& bins, size_t size) {
  auto bin = bins.find(size);
  if (bin == bins.end() || bin->second.empty()) return nullptr;
  void* block = bin->second.back();
  bin->second.pop_back();
  return block;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  // rounded_size wraps to a small number (0 for SIZE_MAX - 3, e.g. a negative count cast to
  // size_t), which would hand back a tiny block or nullptr as if the request had succeeded.
  if (bytes > SIZE_MAX - kGranularity)
    throw_cuda_error("cuda", ("cudaMalloc(" + std::to_string(bytes) + " bytes)").c_str(),
                     "request too large to round to the allocation granularity", __FILE__, __LINE__);
  const size_t size = rounded_size(bytes);
  const auto signed_size = static_cast<int64_t>(size);
  std::lock_guard<std::mutex> lock(mutex_);
  const PoolId open = open_pool_for_caller();
  if (open) {
    if (void* block = take_from(pool_free_blocks_[open], size)) {
      ++stats_.cache_hits;
      stats_.bytes_pooled -= signed_size;
      stats_.bytes_in_use += signed_size;
      return block;
    }
  }
  // A shared or fresh block joins the open pool; the bookkeeping entry is made first so that a
  // failure to record it leaves the block where it was.
  const auto join_open_pool = [&](void* block) {
    if (open) pool_of_block_.emplace(block, open);
  };
  auto bin = free_blocks_.find(size);
  if (bin != free_blocks_.end() && !bin->second.empty()) {
    join_open_pool(bin->second.back());
    void* block = take_from(free_blocks_, size);
    ++stats_.cache_hits;
    stats_.bytes_cached -= signed_size;
    stats_.bytes_in_use += signed_size;
    return block;
  }
  void* block = nullptr;
  cudaError_t status = cudaSuccess;
  if (open) {
    RelaxedCaptureMode relaxed;
    status = cudaMalloc(&block, size);
    ++stats_.malloc_calls;
  } else {
    status = cudaMalloc(&block, size);
    ++stats_.malloc_calls;
    if (status == cudaErrorMemoryAllocation && stats_.bytes_cached > 0) {
      (void)cudaGetLastError();  // clear the sticky-free error state before retrying
      release_cached_locked();
      status = cudaMalloc(&block, size);
      ++stats_.malloc_calls;
    }
  }
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    throw_cuda_error("cuda", ("cudaMalloc(" + std::to_string(size) + " bytes)").c_str(), cudaGetErrorString(status),
                     __FILE__, __LINE__);
  }
  try {
    join_open_pool(block);
  } catch (...) {
    if (!open) {  // while capturing, cudaFree would end the capture: the block is leaked instead
      free_or_log(block, "after a failed pool entry");
      ++stats_.free_calls;
    }
    throw;
  }
  stats_.bytes_in_use += signed_size;
  return block;
}

void CachingAllocator::deallocate(void* block, size_t bytes) noexcept {
  if (!block) return;
  const size_t size = rounded_size(bytes);
  const auto signed_size = static_cast<int64_t>(size);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.bytes_in_use -= signed_size;
  const PoolId open = open_pool_for_caller();
  try {
    // A block freed while a pool is open joins it: the work being captured may have used it.
    PoolId pool = 0;
    const auto owner = pool_of_block_.find(block);
    if (owner != pool_of_block_.end()) {
      pool = owner->second;
    } else if (open) {
      pool = open;
      pool_of_block_.emplace(block, pool);
    }
    if (pool) {
      pool_free_blocks_[pool][size].push_back(block);
      stats_.bytes_pooled += signed_size;
    } else {
      free_blocks_[size].push_back(block);
      stats_.bytes_cached += signed_size;
    }
  } catch (...) {  // a bin could not grow: give the block back to the driver instead
    pool_of_block_.erase(block);
    if (open) {  // cudaFree would end the capture: leak the block rather than break the graph
      std::fprintf(stderr, "[CachingAllocator] out of host memory during a capture: %zu device bytes leaked\n", size);
      return;
    }
    free_or_log(block, "in deallocate");
    ++stats_.free_calls;
  }
}

CachingAllocator::PoolId CachingAllocator::begin_capture_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (capturing_) throw Error("[CachingAllocator] a capture pool is already open");
  capturing_ = ++last_pool_;
  capturing_thread_ = std::this_thread::get_id();
  pool_free_blocks_[capturing_];
  return capturing_;
}

void CachingAllocator::end_capture_pool() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  capturing_ = 0;
}

void CachingAllocator::release_pool(PoolId pool) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (capturing_ == pool) capturing_ = 0;
  for (auto it = pool_of_block_.begin(); it != pool_of_block_.end();)
    it = it->second == pool ? pool_of_block_.erase(it) : std::next(it);
  const auto free_bins = pool_free_blocks_.find(pool);
  if (free_bins == pool_free_blocks_.end()) return;
  for (auto& bin : free_bins->second)
    for (void* block : bin.second) {
      const auto size = static_cast<int64_t>(bin.first);
      stats_.bytes_pooled -= size;
      try {
        free_blocks_[bin.first].push_back(block);
        stats_.bytes_cached += size;
      } catch (...) {
        free_or_log(block, "in release_pool");
        ++stats_.free_calls;
      }
    }
  pool_free_blocks_.erase(free_bins);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

void CachingAllocator::release_cached_locked() {
  // Each block leaves its bin before cudaFree: if one cudaFree fails and throws, the blocks
  // already freed are no longer listed (the destructor would otherwise free them a second time)
  // and bytes_cached still matches what the bins hold.
  for (auto& bin : free_blocks_) {
    while (!bin.second.empty()) {
      void* block = bin.second.back();
      bin.second.pop_back();
      ++stats_.free_calls;
      stats_.bytes_cached -= static_cast<int64_t>(bin.first);
      NNR_CUDA_CHECK(cudaFree(block));
    }
  }
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) NNR_CUDA_CHECK(cudaMalloc(&data_, bytes));
}

DeviceBuffer::DeviceBuffer(size_t bytes, CachingAllocator& allocator)
    : data_(allocator.allocate(bytes)), bytes_(bytes), allocator_(&allocator) {}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      allocator_(std::exchange(other.allocator_, nullptr)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    allocator_ = std::exchange(other.allocator_, nullptr);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (!data_) return;
  if (allocator_) {
    allocator_->deallocate(data_, bytes_);
  } else {
    const cudaError_t status = cudaFree(data_);
    if (status != cudaSuccess) std::fprintf(stderr, "[DeviceBuffer] cudaFree failed: %s\n", cudaGetErrorString(status));
  }
  data_ = nullptr;
  bytes_ = 0;
  allocator_ = nullptr;
}

namespace {
void require_fits(size_t bytes, size_t capacity, const char* op) {
  if (bytes > capacity)
    throw Error(std::string("[DeviceBuffer] ") + op + " of " + std::to_string(bytes) + " bytes into a buffer of " +
                std::to_string(capacity));
}
}  // namespace

void DeviceBuffer::copy_from_host(const void* host, size_t bytes, cudaStream_t stream) {
  require_fits(bytes, bytes_, "copy_from_host");
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(data_, host, bytes, cudaMemcpyHostToDevice, stream));
  NNR_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void DeviceBuffer::copy_to_host(void* host, size_t bytes, cudaStream_t stream) const {
  require_fits(bytes, bytes_, "copy_to_host");
  if (!bytes) return;
  NNR_CUDA_CHECK(cudaMemcpyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, stream));
  NNR_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void DeviceBuffer::fill_bytes(int value, cudaStream_t stream) {
  if (bytes_) NNR_CUDA_CHECK(cudaMemsetAsync(data_, value, bytes_, stream));
}

}  // namespace nnr::kernels
