#pragma once
// Device memory ownership. DeviceBuffer is a move-only RAII byte buffer; it either owns a
// cudaMalloc'd block or borrows one from a CachingAllocator and hands it back on destruction.
// CachingAllocator keeps freed blocks in size bins and reuses them, so a steady-state training
// loop that allocates the same sizes every step performs no cudaMalloc / cudaFree after its
// first step; its counters record every real cudaMalloc / cudaFree so tests can prove it.
//
// Stream rule: a block returned to the cache may be handed out again at once. That is safe when
// all work runs on one stream (the engine's), because the next user's kernels queue behind the
// previous user's. Code that uses a buffer on another stream must synchronise before freeing it.
// Host<->device copies are explicit (copy_from_host / copy_to_host) and meant for the edges only.
//
// Private pools (for CUDA Graphs, kernels/graph.h): between begin_capture_pool and
// end_capture_pool every block handed out or returned belongs to a pool. A pool's blocks stay
// reserved for it until release_pool, even when the tensors holding them are freed, because a
// captured graph writes them again at every replay; nothing outside the pool gets them.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace nnr::kernels {

class CachingAllocator {
 public:
  struct Stats {
    int64_t malloc_calls = 0;   // real cudaMalloc calls
    int64_t free_calls = 0;     // real cudaFree calls
    int64_t cache_hits = 0;     // allocations served from the cache
    int64_t bytes_in_use = 0;   // handed out and not yet returned (rounded sizes)
    int64_t bytes_cached = 0;   // held in the cache, free for reuse
    int64_t bytes_pooled = 0;   // free but reserved by private pools (not in bytes_cached)
  };
  using PoolId = uint64_t;

  // Blocks are rounded up to a multiple of kGranularity bytes (256: cudaMalloc's alignment).
  static constexpr size_t kGranularity = 256;

  CachingAllocator() = default;
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  // Frees every cached block; blocks still in use must be returned first (a leak is logged).
  ~CachingAllocator();

  // A block of at least `bytes` bytes (nullptr for 0). Reuses a cached block of the same
  // rounded size; otherwise cudaMalloc, and on out-of-memory frees the cache and retries once.
  void* allocate(size_t bytes);
  // Returns a block from allocate(bytes) to the cache. Never throws.
  void deallocate(void* block, size_t bytes) noexcept;
  // cudaFree every cached block (e.g. before handing memory to another library). Pool blocks stay.
  void release_cached();

  // Opens a new private pool for the calling thread (the one that captures): until
  // end_capture_pool, its allocate() serves from the pool first (then from the shared cache or
  // cudaMalloc, the block joining the pool) and its deallocate() returns blocks to the pool.
  // cudaMalloc then runs in relaxed capture mode, so an open stream capture survives it; nothing
  // is cudaFree'd (that would end the capture). One pool is open at a time.
  PoolId begin_capture_pool();
  void end_capture_pool() noexcept;
  // The pool's free blocks go back to the shared cache, and its blocks still in use go there when
  // freed. Call when no graph that used the pool will run again.
  void release_pool(PoolId pool) noexcept;

  Stats stats() const;
  static size_t rounded_size(size_t bytes) { return (bytes + kGranularity - 1) / kGranularity * kGranularity; }

 private:
  using Bins = std::map<size_t, std::vector<void*>>;  // rounded size -> free blocks
  void release_cached_locked();
  static void* take_from(Bins& bins, size_t size);

  mutable std::mutex mutex_;
  Bins free_blocks_;  // the shared cache
  std::map<PoolId, Bins> pool_free_blocks_;
  std::unordered_map<void*, PoolId> pool_of_block_;  // every block a live pool owns, free or not
  PoolId capturing_ = 0;  // the open pool, 0: none
  std::thread::id capturing_thread_;
  PoolId open_pool_for_caller() const {
    return capturing_ && std::this_thread::get_id() == capturing_thread_ ? capturing_ : 0;
  }
  PoolId last_pool_ = 0;
  Stats stats_;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Owns a fresh cudaMalloc'd block of `bytes` bytes (contents undefined).
  explicit DeviceBuffer(size_t bytes);
  // Borrows a block from `allocator`, which must outlive the buffer (contents undefined).
  DeviceBuffer(size_t bytes, CachingAllocator& allocator);
  ~DeviceBuffer();

  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

  // Host -> device copy of `bytes` bytes (<= bytes()) on `stream`; returns once `host` may be reused.
  void copy_from_host(const void* host, size_t bytes, cudaStream_t stream);
  // Device -> host copy of `bytes` bytes on `stream`; returns when the data has arrived.
  void copy_to_host(void* host, size_t bytes, cudaStream_t stream) const;
  // Sets every byte to `value` (cudaMemsetAsync on `stream`).
  void fill_bytes(int value, cudaStream_t stream);

 private:
  void release() noexcept;

  void* data_ = nullptr;
  size_t bytes_ = 0;
  CachingAllocator* allocator_ = nullptr;
};

}  // namespace nnr::kernels
