#pragma once
// Device memory ownership. DeviceBuffer is a move-only RAII byte buffer; it either owns a
// cudaMalloc'd block or borrows one from a CachingAllocator and hands it back on destruction.
//
// CachingAllocator: a best-fit caching allocator with block splitting and merging (the scheme of
// PyTorch's CUDA caching allocator), for a retraining stream whose shapes change every round
// (open rows, filters, partial and evaluation batches). Its rules:
//  * Sizes. A request is rounded up to kGranularity (256) bytes. Requests of at most
//    kSmallRequestMax (1 MiB) are small and live in small segments of kSmallSegmentBytes (2 MiB);
//    larger ones live in large segments: kMediumSegmentBytes (20 MiB) for requests under
//    kLargeSegmentMin (10 MiB), else the request rounded up to kLargeRounding (2 MiB). A segment is
//    one cudaMalloc; small and large segments never serve each other's requests.
//  * Best fit. A request takes the smallest free block of its kind that fits (ties: the lowest
//    address). The block is split when the remainder is worth keeping, in a small segment always
//    (the remainder is a multiple of 256 bytes), in a large one when it exceeds kSmallRequestMax;
//    otherwise the request gets the whole block (bytes_in_use counts whole blocks). The remainder
//    stays free in the cache. Only when nothing fits is a new segment cudaMalloc'd.
//  * Merging. A freed block merges with its free neighbours in the same segment that have the same
//    owner (the shared cache or one private pool); a segment whose blocks are all free is again one
//    block. Blocks of different segments never merge, even when their addresses touch.
//  * Out of memory. When cudaMalloc fails with out-of-memory, every wholly free segment of the
//    shared cache is cudaFree'd and the cudaMalloc retried once (skipped while a capture pool is
//    open: a cudaFree would end the capture). If it fails again, CudaError (as every checked CUDA
//    call throws) names the request and the bytes in use, cached, pooled and reserved.
//  * A bound on cached bytes. After a free, while bytes_cached exceeds max_cached_bytes (constructor
//    argument or set_max_cached_bytes; kDefaultMaxCachedBytes = 1 GiB, SIZE_MAX: no bound), wholly
//    free shared segments are cudaFree'd, least recently freed first. Free parts of segments that
//    still hold a live block cannot be returned to the driver, so they can keep bytes_cached above
//    the bound. Nothing is cudaFree'd while a capture pool is open; the bound is enforced again at
//    the next free, release_pool or set_max_cached_bytes after it closes. Set the bound above one
//    training step's temporaries, or every step would cudaFree and cudaMalloc them again.
//  * What goes through it: tensors (engine Context), and the cuBLAS and cuDNN workspaces when
//    BlasHandle / DnnHandle are given the allocator. Page-locked host buffers (PinnedBuffer,
//    kernels/cuda/graph.h) are host memory and stay outside it, as does what cuBLAS / cuDNN allocate
//    internally.
// Its counters record every real cudaMalloc / cudaFree so tests can prove a steady-state loop
// performs none after its warm-up.
//
// Stream rule: a block returned to the cache may be handed out again at once. That is safe when
// all work runs on one stream (the engine's), because the next user's kernels queue behind the
// previous user's. Code that uses a buffer on another stream must synchronise before freeing it.
// Host<->device copies are explicit (copy_from_host / copy_to_host) and meant for the edges only.
//
// Private pools (for CUDA Graphs, kernels/cuda/graph.h): between begin_capture_pool and
// end_capture_pool every block handed out to, or returned by, the capturing thread belongs to the
// pool. A pool's blocks stay reserved for it until release_pool, even when the tensors holding
// them are freed, because a captured graph writes them again at every replay; nothing outside the
// pool gets them. Ownership is per block: a pool may take part of a shared free block (the rest
// stays shared), and pool blocks never merge with shared ones, so a segment may hold both. Keep
// the order of CapturedStep: end the stream capture right after end_capture_pool, before
// anything else is freed (a free with no pool open may cudaFree to keep the bound).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

namespace nnr::kernels {

// Where a CachingAllocator's segments come from and go back to. The default one calls cudaMalloc
// and cudaFree on the current device. Tests substitute one that fails on demand, or one that hands
// out fake addresses so the bookkeeping runs without a GPU (the allocator never dereferences a
// block). A source must outlive every allocator that uses it.
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  // A segment of exactly `bytes` bytes in *segment, or the error (cudaErrorMemoryAllocation when
  // out of memory), with CUDA's last-error state already cleared. `capturing`: the caller has a
  // capture pool open, so a stream capture may be open on this thread (cudaMalloc must then run in
  // relaxed capture mode).
  virtual cudaError_t malloc_segment(void** segment, size_t bytes, bool capturing) noexcept = 0;
  virtual cudaError_t free_segment(void* segment) noexcept = 0;
};

// The cudaMalloc / cudaFree source that allocators use unless given another (never destroyed).
SegmentSource& cuda_segment_source();

class CachingAllocator {
 public:
  struct Stats {
    int64_t malloc_calls = 0;         // real cudaMalloc calls (failed ones included)
    int64_t free_calls = 0;           // real cudaFree calls
    int64_t cache_hits = 0;           // allocations served with no cudaMalloc (a cached block or part of one)
    int64_t bytes_in_use = 0;         // handed out and not yet returned (whole blocks, >= the rounded requests)
    int64_t bytes_cached = 0;         // free in the shared cache, for reuse by anyone
    int64_t bytes_pooled = 0;         // free but reserved by private pools (not in bytes_cached)
    int64_t bytes_reserved = 0;       // in cudaMalloc'd segments: bytes_in_use + bytes_cached + bytes_pooled
    int64_t peak_bytes_reserved = 0;  // the most bytes_reserved has been
    int64_t segments = 0;             // cudaMalloc'd segments held now
    int64_t splits = 0;               // free blocks split to serve a smaller request
    int64_t merges = 0;               // freed blocks merged with a free neighbour
    int64_t oom_retries = 0;          // cudaMalloc out-of-memory failures answered by release-and-retry
    int64_t evictions = 0;            // segments cudaFree'd to keep bytes_cached within max_cached_bytes
  };
  using PoolId = uint64_t;

  static constexpr size_t kGranularity = 256;                       // cudaMalloc's alignment
  static constexpr size_t kSmallRequestMax = size_t{1} << 20;       // 1 MiB: small requests
  static constexpr size_t kSmallSegmentBytes = size_t{2} << 20;     // 2 MiB small segments
  static constexpr size_t kLargeSegmentMin = size_t{10} << 20;      // requests below it share...
  static constexpr size_t kMediumSegmentBytes = size_t{20} << 20;   // ...20 MiB segments
  static constexpr size_t kLargeRounding = size_t{2} << 20;         // larger ones: own segment, 2 MiB multiple
  static constexpr size_t kDefaultMaxCachedBytes = size_t{1} << 30;  // 1 GiB

  // `source`: nullptr for cuda_segment_source(); otherwise it must outlive the allocator.
  explicit CachingAllocator(size_t max_cached_bytes = kDefaultMaxCachedBytes, SegmentSource* source = nullptr);
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  // cudaFrees every segment with no block in use; blocks still in use are leaked (and logged).
  ~CachingAllocator();

  // A block of at least `bytes` bytes (nullptr for 0), kGranularity-aligned: the best fitting
  // cached block, split if worth it, else a new segment (see the rules above). Throws CudaError
  // when the memory cannot be had.
  void* allocate(size_t bytes);
  // Returns a block from allocate(bytes) to the cache (`bytes` is not needed: the allocator knows
  // the block). A pointer it did not hand out is logged and ignored. Never throws.
  void deallocate(void* block, size_t bytes) noexcept;
  // cudaFree every wholly free segment of the shared cache (e.g. before handing memory to another
  // library). Pool blocks, and segments holding a live block, stay. Throws CudaError when a
  // cudaFree fails.
  void release_cached();

  // The bound on bytes_cached; lowering it frees segments at once (unless a capture pool is open).
  void set_max_cached_bytes(size_t bytes) noexcept;
  size_t max_cached_bytes() const;

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
  // For tests: empty when the bookkeeping is consistent (blocks tile their segments, no two free
  // neighbours with one owner, counters match the blocks), else what is wrong. O(blocks log blocks).
  std::string check_invariants() const;

  static size_t rounded_size(size_t bytes) { return (bytes + kGranularity - 1) / kGranularity * kGranularity; }
  // The cudaMalloc size of a new segment for a request of `rounded` (= rounded_size(...)) bytes.
  static size_t segment_size(size_t rounded);

 private:
  struct Segment;
  struct Block;
  struct SizeKey {
    size_t size;
    uintptr_t address;
  };
  struct BySize {  // best-fit order: size, then address
    using is_transparent = void;
    bool operator()(const Block* a, const Block* b) const;
    bool operator()(const Block* a, const SizeKey& b) const;
    bool operator()(const SizeKey& a, const Block* b) const;
  };
  struct ByAge {  // eviction order: least recently freed first
    bool operator()(const Block* a, const Block* b) const;
  };
  using FreeSet = std::set<Block*, BySize>;
  struct FreeBlocks {  // one owner's free blocks
    FreeSet small, large;
    FreeSet& of(bool small_kind) { return small_kind ? small : large; }
  };

  FreeBlocks& owner_of(const Block* block);
  static Block* best_fit(FreeSet& blocks, size_t size);
  void* hand_out(Block* block, size_t size, PoolId open);
  Block* new_segment(size_t size, bool small, PoolId open, size_t requested);
  void put_free(Block* block) noexcept;
  void free_segment_locked(Block* whole, bool eviction, bool throw_on_error);
  void release_cached_locked(bool throw_on_error);
  void enforce_bound_locked() noexcept;
  void add_free_bytes(const Block* block, int64_t bytes);

  mutable std::mutex mutex_;
  SegmentSource* source_;
  size_t max_cached_bytes_;
  FreeBlocks shared_;                          // the shared cache
  std::map<PoolId, FreeBlocks> pools_;         // every pool not yet released, open or not
  std::set<Block*, ByAge> whole_free_;         // shared free blocks that are a whole segment
  std::unordered_map<void*, Block*> allocated_;  // blocks handed out
  std::map<void*, Segment*> segments_;         // by base address
  uint64_t clock_ = 0;                         // ticks at every free, for ByAge
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
