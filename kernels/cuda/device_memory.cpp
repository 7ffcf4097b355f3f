#include "kernels/cuda/device_memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.h"

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

class CudaSegmentSource final : public SegmentSource {
 public:
  cudaError_t malloc_segment(void** segment, size_t bytes, bool capturing) noexcept override {
    cudaError_t status = cudaSuccess;
    if (capturing) {
      RelaxedCaptureMode relaxed;
      status = cudaMalloc(segment, bytes);
    } else {
      status = cudaMalloc(segment, bytes);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();  // a failed cudaMalloc must not surface at the next launch check
      *segment = nullptr;
    }
    return status;
  }
  cudaError_t free_segment(void* segment) noexcept override { return cudaFree(segment); }
};

size_t round_up(size_t bytes, size_t multiple) { return (bytes + multiple - 1) / multiple * multiple; }

std::string mib(int64_t bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%lld bytes (%.1f MiB)", static_cast<long long>(bytes),
                static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

}  // namespace

SegmentSource& cuda_segment_source() {
  static SegmentSource& source = *new CudaSegmentSource();  // never destroyed: static allocators may outlive main
  return source;
}

// One cudaMalloc.
struct CachingAllocator::Segment {
  char* base = nullptr;
  size_t size = 0;
  bool small = false;
  int64_t live_blocks = 0;  // blocks handed out
};

// A piece of a segment: the segment is tiled by its blocks, linked in address order.
struct CachingAllocator::Block {
  Segment* segment = nullptr;
  char* ptr = nullptr;
  size_t size = 0;
  Block* prev = nullptr;
  Block* next = nullptr;
  PoolId pool = 0;  // owner: 0 the shared cache, else a private pool
  bool allocated = false;
  uint64_t freed_at = 0;  // clock_ when last freed (ByAge)
  bool whole() const { return !prev && !next; }
};

bool CachingAllocator::BySize::operator()(const Block* a, const Block* b) const {
  return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
}
bool CachingAllocator::BySize::operator()(const Block* a, const SizeKey& b) const {
  const auto address = reinterpret_cast<uintptr_t>(a->ptr);
  return a->size != b.size ? a->size < b.size : address < b.address;
}
bool CachingAllocator::BySize::operator()(const SizeKey& a, const Block* b) const {
  const auto address = reinterpret_cast<uintptr_t>(b->ptr);
  return a.size != b->size ? a.size < b->size : a.address < address;
}
bool CachingAllocator::ByAge::operator()(const Block* a, const Block* b) const {
  return a->freed_at != b->freed_at ? a->freed_at < b->freed_at : a->ptr < b->ptr;
}

size_t CachingAllocator::segment_size(size_t rounded) {
  if (rounded <= kSmallRequestMax) return kSmallSegmentBytes;
  if (rounded < kLargeSegmentMin) return kMediumSegmentBytes;
  if (rounded > SIZE_MAX - kLargeRounding) return rounded;  // cannot be had anyway: let cudaMalloc say so
  return round_up(rounded, kLargeRounding);
}

CachingAllocator::CachingAllocator(size_t max_cached_bytes, SegmentSource* source)
    : source_(source ? source : &cuda_segment_source()), max_cached_bytes_(max_cached_bytes) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stats_.bytes_in_use != 0)
    std::fprintf(stderr, "[CachingAllocator] destroyed with %lld bytes still in use (leaked)\n",
                 static_cast<long long>(stats_.bytes_in_use));
  for (auto& entry : segments_) {
    Segment* segment = entry.second;
    if (segment->live_blocks == 0) {
      const cudaError_t status = source_->free_segment(segment->base);
      if (status != cudaSuccess)
        std::fprintf(stderr, "[CachingAllocator] cudaFree failed in destructor: %s\n", cudaGetErrorString(status));
    }
    delete segment;
  }
  std::vector<Block*> blocks;
  for (FreeSet* set : {&shared_.small, &shared_.large}) blocks.insert(blocks.end(), set->begin(), set->end());
  for (auto& pool : pools_)
    for (FreeSet* set : {&pool.second.small, &pool.second.large}) blocks.insert(blocks.end(), set->begin(), set->end());
  for (auto& entry : allocated_) blocks.push_back(entry.second);
  for (Block* block : blocks) delete block;
}

CachingAllocator::FreeBlocks& CachingAllocator::owner_of(const Block* block) {
  return block->pool ? pools_.at(block->pool) : shared_;
}

void CachingAllocator::add_free_bytes(const Block* block, int64_t bytes) {
  (block->pool ? stats_.bytes_pooled : stats_.bytes_cached) += bytes;
}

CachingAllocator::Block* CachingAllocator::best_fit(FreeSet& blocks, size_t size) {
  const auto found = blocks.lower_bound(SizeKey{size, 0});
  return found == blocks.end() ? nullptr : *found;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  // rounded_size wraps to a small number (0 for SIZE_MAX - 3, e.g. a negative count cast to
  // size_t), which would hand back a tiny block or nullptr as if the request had succeeded.
  if (bytes > SIZE_MAX - kGranularity)
    throw_cuda_error("cuda", ("cudaMalloc(" + std::to_string(bytes) + " bytes)").c_str(),
                     "request too large to round to the allocation granularity", __FILE__, __LINE__);
  const size_t size = rounded_size(bytes);
  const bool small = size <= kSmallRequestMax;
  std::lock_guard<std::mutex> lock(mutex_);
  const PoolId open = open_pool_for_caller();
  Block* found = open ? best_fit(pools_.at(open).of(small), size) : nullptr;
  if (!found) found = best_fit(shared_.of(small), size);
  if (found) {
    void* block = hand_out(found, size, open);
    ++stats_.cache_hits;
    return block;
  }
  return hand_out(new_segment(size, small, open, bytes), size, open);
}

// `block` is free (in its owner's free set); it leaves it, split first when the remainder is
// worth keeping, and is handed out, joining the open pool if there is one. The remainder keeps
// the owner the block had.
void* CachingAllocator::hand_out(Block* block, size_t size, PoolId open) {
  FreeSet& set = owner_of(block).of(block->segment->small);
  const size_t remainder = block->size - size;
  const bool split = block->segment->small ? remainder >= kGranularity : remainder > kSmallRequestMax;
  std::unique_ptr<Block> rest;
  if (split) rest = std::make_unique<Block>();
  allocated_.emplace(block->ptr, block);  // the last step that can throw: nothing has changed yet
  auto node = set.extract(block);
  whole_free_.erase(block);
  add_free_bytes(block, -static_cast<int64_t>(block->size));
  if (split) {
    Block* r = rest.release();
    r->segment = block->segment;
    r->ptr = block->ptr + size;
    r->size = remainder;
    r->prev = block;
    r->next = block->next;
    if (r->next) r->next->prev = r;
    r->pool = block->pool;
    r->freed_at = block->freed_at;
    block->next = r;
    block->size = size;
    node.value() = r;  // the extracted node carries the remainder back: no allocation, no throw
    set.insert(std::move(node));
    add_free_bytes(r, static_cast<int64_t>(remainder));
    ++stats_.splits;
  }
  block->allocated = true;
  if (open) block->pool = open;
  ++block->segment->live_blocks;
  stats_.bytes_in_use += static_cast<int64_t>(block->size);
  return block->ptr;
}

// A new segment for a request of `size` (rounded) bytes, as one free block of the shared cache.
CachingAllocator::Block* CachingAllocator::new_segment(size_t size, bool small, PoolId open, size_t requested) {
  const size_t bytes = segment_size(size);
  auto segment = std::make_unique<Segment>();
  auto block = std::make_unique<Block>();
  void* base = nullptr;
  cudaError_t status = source_->malloc_segment(&base, bytes, open != 0);
  ++stats_.malloc_calls;
  const char* after = "";
  if (status == cudaErrorMemoryAllocation) {
    if (capturing_) {
      after = "; the cache was not released: a capture pool is open";
    } else {
      release_cached_locked(true);
      ++stats_.oom_retries;
      status = source_->malloc_segment(&base, bytes, false);
      ++stats_.malloc_calls;
      after = "; retried after cudaFree of every free cached segment";
    }
  }
  if (status != cudaSuccess) {
    const std::string message = std::string(cudaGetErrorString(status)) + " (request of " + std::to_string(requested) +
                                " bytes, a new segment of " + std::to_string(bytes) + "; allocator: in use " +
                                mib(stats_.bytes_in_use) + ", cached " + mib(stats_.bytes_cached) + ", pooled " +
                                mib(stats_.bytes_pooled) + ", reserved " + mib(stats_.bytes_reserved) + " in " +
                                std::to_string(stats_.segments) + " segments" + after + ")";
    throw_cuda_error("cuda", ("cudaMalloc(" + std::to_string(bytes) + " bytes)").c_str(), message.c_str(), __FILE__,
                     __LINE__);
  }
  segment->base = static_cast<char*>(base);
  segment->size = bytes;
  segment->small = small;
  block->segment = segment.get();
  block->ptr = segment->base;
  block->size = bytes;
  block->freed_at = ++clock_;
  try {
    segments_.emplace(segment->base, segment.get());
    shared_.of(small).insert(block.get());
  } catch (...) {
    segments_.erase(segment->base);
    if (open) {  // cudaFree would end the capture: the segment is leaked instead
      std::fprintf(stderr, "[CachingAllocator] out of host memory during a capture: %zu device bytes leaked\n", bytes);
    } else {
      (void)source_->free_segment(base);
      ++stats_.free_calls;
    }
    throw;
  }
  segment.release();
  stats_.bytes_cached += static_cast<int64_t>(bytes);
  stats_.bytes_reserved += static_cast<int64_t>(bytes);
  stats_.peak_bytes_reserved = std::max(stats_.peak_bytes_reserved, stats_.bytes_reserved);
  ++stats_.segments;
  return block.release();
}

// `block` (free, in no set, its owner set) merges with its free neighbours of the same owner and
// joins its owner's free blocks.
void CachingAllocator::put_free(Block* block) noexcept {
  FreeSet& set = owner_of(block).of(block->segment->small);
  FreeSet::node_type node;
  for (Block* neighbour : {block->prev, block->next}) {
    if (!neighbour || neighbour->allocated || neighbour->pool != block->pool) continue;
    FreeSet::node_type taken = set.extract(neighbour);  // a neighbour is never a whole segment
    if (node.empty()) node = std::move(taken);
    add_free_bytes(neighbour, -static_cast<int64_t>(neighbour->size));
    if (neighbour == block->prev) {
      block->ptr = neighbour->ptr;
      block->prev = neighbour->prev;
      if (block->prev) block->prev->next = block;
    } else {
      block->next = neighbour->next;
      if (block->next) block->next->prev = block;
    }
    block->size += neighbour->size;
    delete neighbour;
    ++stats_.merges;
  }
  block->freed_at = ++clock_;
  try {
    if (node.empty()) {
      set.insert(block);
    } else {
      node.value() = block;
      set.insert(std::move(node));
    }
  } catch (...) {
    std::fprintf(stderr, "[CachingAllocator] out of host memory: a free block of %zu bytes is lost until destruction\n",
                 block->size);
    return;
  }
  add_free_bytes(block, static_cast<int64_t>(block->size));
  if (!block->pool && block->whole()) {
    try {
      whole_free_.insert(block);
    } catch (...) {
      std::fprintf(stderr, "[CachingAllocator] out of host memory: a free segment of %zu bytes will not be released\n",
                   block->size);
    }
  }
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) noexcept {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = allocated_.find(ptr);
  if (found == allocated_.end()) {
    std::fprintf(stderr, "[CachingAllocator] deallocate(%p, %zu): not a block it handed out; ignored\n", ptr, bytes);
    return;
  }
  Block* block = found->second;
  allocated_.erase(found);
  block->allocated = false;
  --block->segment->live_blocks;
  stats_.bytes_in_use -= static_cast<int64_t>(block->size);
  // A block freed while the caller's pool is open joins it: the work being captured may have used it.
  if (!block->pool) block->pool = open_pool_for_caller();
  put_free(block);
  enforce_bound_locked();
}

void CachingAllocator::free_segment_locked(Block* whole, bool eviction, bool throw_on_error) {
  Segment* segment = whole->segment;
  void* base = segment->base;
  const auto bytes = static_cast<int64_t>(segment->size);
  // The bookkeeping goes first: if cudaFree fails and throws, the segment is no longer listed (the
  // destructor would otherwise free it a second time) and the counters match what is listed.
  shared_.of(segment->small).erase(whole);
  whole_free_.erase(whole);
  segments_.erase(segment->base);
  delete whole;
  delete segment;
  stats_.bytes_cached -= bytes;
  stats_.bytes_reserved -= bytes;
  --stats_.segments;
  ++stats_.free_calls;
  if (eviction) ++stats_.evictions;
  const cudaError_t status = source_->free_segment(base);
  if (status == cudaSuccess) return;
  if (throw_on_error) throw_cuda_error("cuda", "cudaFree(segment)", cudaGetErrorString(status), __FILE__, __LINE__);
  std::fprintf(stderr, "[CachingAllocator] cudaFree failed: %s\n", cudaGetErrorString(status));
}

void CachingAllocator::release_cached_locked(bool throw_on_error) {
  while (!whole_free_.empty()) free_segment_locked(*whole_free_.begin(), false, throw_on_error);
}

void CachingAllocator::enforce_bound_locked() noexcept {
  if (capturing_) return;  // no cudaFree while a capture may be open
  while (static_cast<uint64_t>(stats_.bytes_cached) > max_cached_bytes_ && !whole_free_.empty())
    free_segment_locked(*whole_free_.begin(), true, false);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked(true);
}

void CachingAllocator::set_max_cached_bytes(size_t bytes) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  max_cached_bytes_ = bytes;
  enforce_bound_locked();
}

size_t CachingAllocator::max_cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return max_cached_bytes_;
}

CachingAllocator::PoolId CachingAllocator::begin_capture_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (capturing_) throw Error("[CachingAllocator] a capture pool is already open");
  const PoolId pool = last_pool_ + 1;
  pools_[pool];  // may throw: nothing has changed yet
  last_pool_ = pool;
  capturing_ = pool;
  capturing_thread_ = std::this_thread::get_id();
  return pool;
}

void CachingAllocator::end_capture_pool() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  capturing_ = 0;
}

void CachingAllocator::release_pool(PoolId pool) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!pool) return;
  if (capturing_ == pool) capturing_ = 0;
  for (auto& entry : allocated_)
    if (entry.second->pool == pool) entry.second->pool = 0;
  const auto found = pools_.find(pool);
  if (found == pools_.end()) return;
  for (FreeSet* set : {&found->second.small, &found->second.large}) {
    while (!set->empty()) {
      Block* block = *set->begin();
      set->erase(set->begin());
      add_free_bytes(block, -static_cast<int64_t>(block->size));
      block->pool = 0;
      put_free(block);  // merges with the shared free neighbours it was kept apart from
    }
  }
  pools_.erase(found);
  enforce_bound_locked();
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::string CachingAllocator::check_invariants() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string problems;
  const auto fail = [&problems](const std::string& what) {
    if (problems.size() < 4000) problems += what + "\n";
  };
  std::map<const Segment*, std::vector<const Block*>> blocks_of;
  int64_t in_use = 0, cached = 0, pooled = 0;
  const auto check_free_set = [&](const FreeSet& set, PoolId pool, bool small, int64_t& total) {
    for (const Block* b : set) {
      if (b->allocated) fail("an allocated block is in a free set");
      if (b->pool != pool) fail("a free block is in another owner's set");
      if (b->segment->small != small) fail("a free block is in the set of the other segment kind");
      const bool listed = whole_free_.count(const_cast<Block*>(b)) != 0;
      if (listed != (pool == 0 && b->whole())) fail("whole_free_ disagrees with a free block");
      total += static_cast<int64_t>(b->size);
      blocks_of[b->segment].push_back(b);
    }
  };
  check_free_set(shared_.small, 0, true, cached);
  check_free_set(shared_.large, 0, false, cached);
  for (const auto& pool : pools_) {
    check_free_set(pool.second.small, pool.first, true, pooled);
    check_free_set(pool.second.large, pool.first, false, pooled);
  }
  for (const auto& entry : allocated_) {
    const Block* b = entry.second;
    if (!b->allocated || entry.first != b->ptr) fail("allocated_ lists a free block or under another address");
    if (b->pool && !pools_.count(b->pool)) fail("an allocated block belongs to a released pool");
    in_use += static_cast<int64_t>(b->size);
    blocks_of[b->segment].push_back(b);
  }
  for (const Block* b : whole_free_)
    if (b->allocated || b->pool || !b->whole()) fail("whole_free_ lists a block that is not a free shared segment");
  int64_t reserved = 0;
  for (const auto& entry : segments_) {
    const Segment* segment = entry.second;
    reserved += static_cast<int64_t>(segment->size);
    if (entry.first != segment->base) fail("segments_ lists a segment under another address");
    auto found = blocks_of.find(segment);
    if (found == blocks_of.end()) {
      fail("a segment has no listed block");
      continue;
    }
    auto& blocks = found->second;
    std::sort(blocks.begin(), blocks.end(), [](const Block* a, const Block* b) { return a->ptr < b->ptr; });
    const char* expected = segment->base;
    int64_t live = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block* b = blocks[i];
      if (b->ptr != expected) fail("blocks do not tile their segment (gap or overlap)");
      if ((b->ptr - segment->base) % static_cast<std::ptrdiff_t>(kGranularity) || b->size % kGranularity)
        fail("a block is not a multiple of the granularity");
      if (b->prev != (i ? blocks[i - 1] : nullptr) || b->next != (i + 1 < blocks.size() ? blocks[i + 1] : nullptr))
        fail("a block's neighbour links are wrong");
      if (i && !b->allocated && !blocks[i - 1]->allocated && b->pool == blocks[i - 1]->pool)
        fail("two free neighbours with one owner were not merged");
      live += b->allocated ? 1 : 0;
      expected = b->ptr + b->size;
    }
    if (expected != segment->base + segment->size) fail("blocks do not cover their segment");
    if (live != segment->live_blocks) fail("a segment's live block count is wrong");
    blocks_of.erase(found);
  }
  if (!blocks_of.empty()) fail("a block belongs to no listed segment");
  const auto check_counter = [&fail](const char* name, int64_t counted, int64_t listed) {
    if (counted != listed) fail(std::string(name) + " " + std::to_string(counted) + " != " + std::to_string(listed));
  };
  check_counter("bytes_in_use", stats_.bytes_in_use, in_use);
  check_counter("bytes_cached", stats_.bytes_cached, cached);
  check_counter("bytes_pooled", stats_.bytes_pooled, pooled);
  if (reserved != stats_.bytes_reserved || reserved != in_use + cached + pooled)
    fail("bytes_reserved " + std::to_string(stats_.bytes_reserved) + " != segments " + std::to_string(reserved));
  if (static_cast<int64_t>(segments_.size()) != stats_.segments) fail("segments count is wrong");
  if (stats_.peak_bytes_reserved < stats_.bytes_reserved) fail("peak_bytes_reserved is below bytes_reserved");
  return problems;
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
