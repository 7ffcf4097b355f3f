// Device buffers, the caching allocator (best fit, splitting, merging, release-and-retry on
// out-of-memory, the bound on cached bytes, private pools) and the checked-call macro.
//
// Two binaries compile this file. nnr_kernels_tests (GPU; skipped without a device) runs every
// case. nnr_memory_host_tests compiles it with NNR_MEMORY_HOST_TESTS_ONLY and runs only the
// "[host]" cases: they drive the allocator's bookkeeping through a FakeSegmentSource that hands out
// fake addresses (the allocator never dereferences a block), so they need no GPU and run anywhere.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/core/rng.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#ifndef NNR_MEMORY_HOST_TESTS_ONLY
#include "kernels/cuda/blas_handle.h"
#include "kernels/gemm.h"
#include "kernels/elementwise.h"
#include "kernels/masked_update.h"
#include "kernels/reduce.h"
#include "kernels/softmax_cross_entropy.h"
#include "tests/kernels/gpu_test_util.h"
#ifdef NNR_WITH_CUDNN
#include "kernels/cuda/dnn_handle.h"
#endif
#endif

using namespace nnr;
using nnr::kernels::CachingAllocator;
using nnr::kernels::DeviceBuffer;
using nnr::kernels::SegmentSource;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Segments for the allocator under test. Without `real`, fake addresses: segment after segment
// with no gap between them (so a test sees that blocks of touching segments still never merge),
// at most `capacity` bytes at once. With `real`, the calls go to it. Either way fail_next makes
// the next cudaMalloc calls fail with out-of-memory, as a full device would.
class TestSegmentSource final : public SegmentSource {
 public:
  explicit TestSegmentSource(size_t capacity = SIZE_MAX, SegmentSource* real = nullptr)
      : capacity_(capacity), real_(real) {}

  cudaError_t malloc_segment(void** segment, size_t bytes, bool capturing) noexcept override {
    ++mallocs;
    if (capturing) ++capturing_mallocs;
    if (fail_next > 0) {
      --fail_next;
      *segment = nullptr;
      return cudaErrorMemoryAllocation;
    }
    if (real_) {
      const cudaError_t status = real_->malloc_segment(segment, bytes, capturing);
      if (status == cudaSuccess) live_[reinterpret_cast<uintptr_t>(*segment)] = bytes;
      return status;
    }
    if (bytes > capacity_ - live_bytes()) {
      *segment = nullptr;
      return cudaErrorMemoryAllocation;
    }
    *segment = reinterpret_cast<void*>(next_);
    live_[next_] = bytes;
    next_ += bytes;
    return cudaSuccess;
  }

  cudaError_t free_segment(void* segment) noexcept override {
    const auto found = live_.find(reinterpret_cast<uintptr_t>(segment));
    if (found == live_.end()) {
      ++bad_frees;
      return cudaErrorInvalidValue;
    }
    live_.erase(found);
    freed.push_back(segment);
    return real_ ? real_->free_segment(segment) : cudaSuccess;
  }

  size_t live_bytes() const {
    size_t total = 0;
    for (const auto& entry : live_) total += entry.second;
    return total;
  }
  size_t live_segments() const { return live_.size(); }

  int fail_next = 0;
  int64_t mallocs = 0, capturing_mallocs = 0, bad_frees = 0;
  std::vector<void*> freed;  // in the order of their cudaFree

 private:
  size_t capacity_;
  SegmentSource* real_;
  uintptr_t next_ = uintptr_t{1} << 44;
  std::map<uintptr_t, size_t> live_;
};

uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }
char* offset(void* p, size_t bytes) { return static_cast<char*>(p) + bytes; }

// The blocks a test holds: each must be aligned and overlap no other.
class LiveBlocks {
 public:
  void add(void* p, size_t bytes) {
    REQUIRE(p != nullptr);
    REQUIRE(address(p) % CachingAllocator::kGranularity == 0);
    const auto next = live_.lower_bound(address(p));
    if (next != live_.end()) REQUIRE(address(p) + bytes <= next->first);
    if (next != live_.begin()) REQUIRE(std::prev(next)->first + std::prev(next)->second <= address(p));
    live_[address(p)] = bytes;
  }
  void remove(void* p) { REQUIRE(live_.erase(address(p)) == 1); }

 private:
  std::map<uintptr_t, size_t> live_;
};

// Fifty retraining rounds. Each round draws its count of open rows (1..3000) and rebuilds the
// model at that size: 4 tensors ([rows, 784], [rows], [10, rows], [10]) times value, gradient and
// two Adam moments, the new set allocated before the old one is freed, as a resize that copies
// does. Then two full batches of 257, a partial batch of 1..256 and an evaluation batch of 1000
// (no gradients) allocate their temporaries (input, hidden, logits, probabilities, labels, loss,
// a reduction workspace of 1..5000 bytes, and for training the two gradients) and free them in a
// shuffled order. Sizes are mostly not multiples of 32 floats. `fill` and `verify` let the GPU
// version write a tag into every block and check it is intact when the block is freed.
struct RoundsReport {
  int64_t allocations = 0;
  int64_t demand_peak = 0;           // max over time of Σ segment_size(request) of the live blocks
  int64_t exact_size_reserved = 0;   // what caching by exact size only (the old allocator) would hold
};

using BlockHook = std::function<void(void*, size_t, uint8_t)>;

RoundsReport run_rounds(CachingAllocator& allocator, const BlockHook& fill, const BlockHook& verify) {
  struct Held {
    void* ptr;
    size_t bytes;
    uint8_t tag;
  };
  Rng rng(2024);
  LiveBlocks live;
  RoundsReport report;
  int64_t demand = 0;
  uint8_t tag = 0;
  std::map<size_t, int64_t> exact_live, exact_max;  // rounded size -> blocks live now / at most
  const auto demand_of = [](size_t bytes) {
    return static_cast<int64_t>(CachingAllocator::segment_size(CachingAllocator::rounded_size(bytes)));
  };
  const auto take = [&](size_t bytes) {
    Held held{allocator.allocate(bytes), bytes, static_cast<uint8_t>(++tag ? tag : ++tag)};
    live.add(held.ptr, bytes);
    fill(held.ptr, bytes, held.tag);
    ++report.allocations;
    demand += demand_of(bytes);
    report.demand_peak = std::max(report.demand_peak, demand);
    const size_t rounded = CachingAllocator::rounded_size(bytes);
    exact_max[rounded] = std::max(exact_max[rounded], ++exact_live[rounded]);
    return held;
  };
  const auto give = [&](const Held& held) {
    verify(held.ptr, held.bytes, held.tag);
    live.remove(held.ptr);
    allocator.deallocate(held.ptr, held.bytes);
    demand -= demand_of(held.bytes);
    --exact_live[CachingAllocator::rounded_size(held.bytes)];
  };
  const auto shuffle = [&rng](std::vector<Held>& blocks) {
    for (size_t i = blocks.size(); i > 1; --i) std::swap(blocks[i - 1], blocks[rng.below(i)]);
  };

  constexpr size_t kFeatures = 784, kClasses = 10, kFloat = sizeof(float);
  std::vector<Held> model;
  for (int round = 0; round < 50; ++round) {
    const size_t rows = 1 + rng.below(3000);
    std::vector<Held> resized;
    for (int copy = 0; copy < 4; ++copy)
      for (const size_t count : {rows * kFeatures, rows, kClasses * rows, kClasses})
        resized.push_back(take(count * kFloat));
    for (const Held& held : model) give(held);
    model = std::move(resized);
    const size_t partial = 1 + rng.below(256);
    for (const size_t batch : {size_t{257}, size_t{257}, partial, size_t{1000}}) {
      const bool evaluation = batch == 1000;
      std::vector<Held> temps;
      temps.push_back(take(batch * kFeatures * kFloat));  // input
      temps.push_back(take(batch * rows * kFloat));       // hidden
      temps.push_back(take(batch * kClasses * kFloat));   // logits
      temps.push_back(take(batch * kClasses * kFloat));   // probabilities
      temps.push_back(take(batch * sizeof(int32_t)));     // labels
      temps.push_back(take(2 * sizeof(double)));          // loss
      temps.push_back(take(1 + rng.below(5000)));         // reduction workspace
      if (!evaluation) {
        temps.push_back(take(batch * kClasses * kFloat));  // dlogits
        temps.push_back(take(batch * rows * kFloat));      // dhidden
      }
      shuffle(temps);
      for (const Held& held : temps) give(held);
    }
    INFO("round " << round);
    REQUIRE(allocator.check_invariants().empty());
  }
  for (const Held& held : model) give(held);
  for (const auto& entry : exact_max) report.exact_size_reserved += static_cast<int64_t>(entry.first) * entry.second;
  return report;
}

// The bound the rounds must keep, with kRoundsMaxCached = 64 MiB of cache allowed. Live blocks
// need at most Σ segment_size(request) (demand_peak): a new segment is made only when no free
// block fits, for one request, at segment_size(request). Wholly free segments are capped by the
// bound (evicted after every free). What remains is fragmentation: free space stranded in
// segments that still hold a live block; the factor 2 allows for it (the fake-address run keeps
// well inside: see the report in the test output with -s).
constexpr size_t kRoundsMaxCached = 64 * kMiB;

void require_rounds_bounded(const CachingAllocator::Stats& stats, const RoundsReport& report) {
  INFO("allocations " << report.allocations << ", cudaMalloc " << stats.malloc_calls << ", cudaFree "
                      << stats.free_calls << ", peak reserved " << stats.peak_bytes_reserved << ", peak demand "
                      << report.demand_peak << ", exact-size caching would hold " << report.exact_size_reserved);
  REQUIRE(stats.bytes_in_use == 0);
  REQUIRE(stats.bytes_reserved <= static_cast<int64_t>(kRoundsMaxCached));  // every segment free: the bound holds
  REQUIRE(stats.peak_bytes_reserved <= static_cast<int64_t>(kRoundsMaxCached) + report.demand_peak);
  REQUIRE(stats.peak_bytes_reserved < report.exact_size_reserved);
  REQUIRE(stats.evictions > 0);                            // the bound was reached and kept
  REQUIRE(stats.malloc_calls < report.allocations / 10);   // most requests came from the cache
  REQUIRE(stats.cache_hits + stats.malloc_calls == report.allocations);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The allocator's bookkeeping on fake addresses: no GPU needed.

TEST_CASE("small requests are split from one 2 MiB segment", "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  void* a = allocator.allocate(3000);
  auto stats = allocator.stats();
  REQUIRE(stats.malloc_calls == 1);
  REQUIRE(stats.segments == 1);
  REQUIRE(stats.bytes_reserved == static_cast<int64_t>(CachingAllocator::kSmallSegmentBytes));
  REQUIRE(stats.bytes_in_use == 3072);
  REQUIRE(stats.bytes_cached == static_cast<int64_t>(CachingAllocator::kSmallSegmentBytes) - 3072);
  REQUIRE(stats.splits == 1);
  void* b = allocator.allocate(5000);  // the rest of the segment, right after a
  REQUIRE(b == offset(a, 3072));
  void* c = allocator.allocate(kMiB);  // still fits: 1 MiB is a small request
  REQUIRE(c == offset(a, 3072 + 5120));
  stats = allocator.stats();
  REQUIRE(stats.malloc_calls == 1);
  REQUIRE(stats.cache_hits == 2);
  void* d = allocator.allocate(kMiB);  // does not fit in what is left: a second segment
  REQUIRE(allocator.stats().malloc_calls == 2);
  REQUIRE(allocator.check_invariants().empty());
  for (void* p : {a, b, c, d}) allocator.deallocate(p, 0);
  REQUIRE(allocator.check_invariants().empty());
  REQUIRE(allocator.stats().bytes_in_use == 0);
  allocator.release_cached();  // both segments merged back whole
  REQUIRE(allocator.stats().free_calls == 2);
  REQUIRE(allocator.stats().bytes_reserved == 0);
  REQUIRE(source.live_segments() == 0);
}

TEST_CASE("a request takes the smallest free block that fits and splits it when the rest is large",
          "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  // Large: requests of 10 MiB or more get their own segment (a multiple of 2 MiB).
  void* x12 = allocator.allocate(12 * kMiB);
  void* x16 = allocator.allocate(16 * kMiB);
  void* x14 = allocator.allocate(14 * kMiB - 1000);
  for (void* p : {x12, x16, x14}) allocator.deallocate(p, 0);
  REQUIRE(allocator.stats().segments == 3);

  void* a = allocator.allocate(13 * kMiB);  // 14 is the smallest that fits; 1 MiB left: not split
  REQUIRE(a == x14);
  REQUIRE(allocator.stats().bytes_in_use == static_cast<int64_t>(14 * kMiB));
  REQUIRE(allocator.stats().splits == 0);
  void* b = allocator.allocate(11 * kMiB + 100);  // 12 is now the smallest that fits
  REQUIRE(b == x12);
  void* c = allocator.allocate(3 * kMiB);  // only 16 is left: split, 13 MiB stay cached
  REQUIRE(c == x16);
  REQUIRE(allocator.stats().splits == 1);
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(13 * kMiB));
  void* d = allocator.allocate(12 * kMiB + kMiB / 2);  // from the remainder
  REQUIRE(d == offset(x16, 3 * kMiB));
  REQUIRE(allocator.stats().malloc_calls == 3);

  // Small: holes of 4096, 1024 and 2048 bytes between live guards.
  void* s1 = allocator.allocate(4096);
  void* g1 = allocator.allocate(256);
  void* s2 = allocator.allocate(1024);
  void* g2 = allocator.allocate(256);
  void* s3 = allocator.allocate(2048);
  void* g3 = allocator.allocate(256);
  for (void* p : {s1, s2, s3}) allocator.deallocate(p, 0);
  void* e = allocator.allocate(1500);  // 1536 rounded: the 2048 hole, not the 4096 one; 512 left
  REQUIRE(e == s3);
  void* f = allocator.allocate(1000);  // 1024: the exact hole
  REQUIRE(f == s2);
  void* g = allocator.allocate(600);  // 768: the 512 left of s3 is too small, the 4096 hole is next
  REQUIRE(g == s1);
  REQUIRE(allocator.check_invariants().empty());
  for (void* p : {a, b, c, d, e, f, g, g1, g2, g3}) allocator.deallocate(p, 0);
  REQUIRE(allocator.check_invariants().empty());
  REQUIRE(allocator.stats().bytes_in_use == 0);
}

TEST_CASE("freed neighbours in a segment merge back, blocks of touching segments never merge", "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  void* a = allocator.allocate(100 * 1024);
  void* b = allocator.allocate(100 * 1024);
  void* c = allocator.allocate(100 * 1024);
  REQUIRE(b == offset(a, 100 * 1024));
  REQUIRE(c == offset(b, 100 * 1024));
  allocator.deallocate(b, 0);  // both neighbours in use: nothing to merge
  REQUIRE(allocator.stats().merges == 0);
  allocator.deallocate(a, 0);  // merges with b
  REQUIRE(allocator.stats().merges == 1);
  allocator.deallocate(c, 0);  // merges with a+b before it and the free rest after it
  REQUIRE(allocator.stats().merges == 3);
  REQUIRE(allocator.check_invariants().empty());
  // One whole free segment again: a request of the largest small size fits at its start.
  void* whole = allocator.allocate(CachingAllocator::kSmallRequestMax);
  REQUIRE(whole == a);
  allocator.deallocate(whole, 0);

  // Two large segments whose fake addresses touch: free side by side, yet a request for their
  // sum needs a new segment, because blocks of different cudaMallocs are never one block.
  void* x = allocator.allocate(12 * kMiB);
  void* y = allocator.allocate(12 * kMiB);
  REQUIRE(y == offset(x, 12 * kMiB));
  allocator.deallocate(x, 0);
  allocator.deallocate(y, 0);
  const int64_t mallocs = allocator.stats().malloc_calls;
  void* z = allocator.allocate(24 * kMiB);
  REQUIRE(allocator.stats().malloc_calls == mallocs + 1);
  REQUIRE(address(z) >= address(y) + 12 * kMiB);
  allocator.deallocate(z, 0);
  REQUIRE(allocator.check_invariants().empty());
  allocator.release_cached();
  REQUIRE(allocator.stats().segments == 0);
  REQUIRE(source.live_segments() == 0);
}

TEST_CASE("out of memory frees the cached segments and retries once, then throws with the numbers",
          "[memory][host]") {
  TestSegmentSource source(64 * kMiB);  // a 64 MiB device
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  void* x = allocator.allocate(40 * kMiB);
  allocator.deallocate(x, 0);
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(40 * kMiB));

  void* y = allocator.allocate(50 * kMiB);  // 40 + 50 > 64: fails, frees the 40, succeeds
  auto stats = allocator.stats();
  REQUIRE(stats.oom_retries == 1);
  REQUIRE(stats.malloc_calls == 3);
  REQUIRE(stats.free_calls == 1);
  REQUIRE(stats.bytes_cached == 0);
  REQUIRE(stats.bytes_in_use == static_cast<int64_t>(50 * kMiB));

  // Nothing cached to free: the retry fails too, and the error says what was asked and held.
  try {
    (void)allocator.allocate(30 * kMiB);
    FAIL("no exception");
  } catch (const CudaError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("[cuda] cudaMalloc(") == 0);
    REQUIRE(what.find("request of 31457280 bytes") != std::string::npos);
    REQUIRE(what.find("in use 52428800 bytes") != std::string::npos);
    REQUIRE(what.find("cached 0 bytes") != std::string::npos);
    REQUIRE(what.find("retried") != std::string::npos);
  }
  stats = allocator.stats();
  REQUIRE(stats.oom_retries == 2);
  REQUIRE(stats.malloc_calls == 5);
  REQUIRE(stats.bytes_in_use == static_cast<int64_t>(50 * kMiB));
  REQUIRE(allocator.check_invariants().empty());

  // A simulated failure (the hook) with a cached segment that does not fit: freed, then retried.
  allocator.deallocate(y, 0);
  source.fail_next = 1;
  void* z = allocator.allocate(60 * kMiB);
  REQUIRE(z != nullptr);
  REQUIRE(allocator.stats().oom_retries == 3);
  REQUIRE(allocator.stats().segments == 1);
  allocator.deallocate(z, 0);

  // While a capture pool is open nothing may be cudaFree'd: no release, no retry.
  const int64_t frees = allocator.stats().free_calls;
  const auto pool = allocator.begin_capture_pool();
  source.fail_next = 1;
  try {
    (void)allocator.allocate(61 * kMiB);
    FAIL("no exception");
  } catch (const CudaError& e) {
    REQUIRE(std::string(e.what()).find("capture pool is open") != std::string::npos);
  }
  allocator.end_capture_pool();
  allocator.release_pool(pool);
  REQUIRE(allocator.stats().free_calls == frees);
  REQUIRE(allocator.stats().oom_retries == 3);
  REQUIRE(allocator.check_invariants().empty());
  REQUIRE(source.bad_frees == 0);
}

TEST_CASE("the bound on cached bytes frees the least recently freed whole segments", "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(20 * kMiB, &source);
  REQUIRE(allocator.max_cached_bytes() == 20 * kMiB);
  void* a = allocator.allocate(12 * kMiB);
  void* b = allocator.allocate(14 * kMiB);
  void* c = allocator.allocate(16 * kMiB);
  allocator.deallocate(a, 0);  // 12 cached: within the bound
  REQUIRE(allocator.stats().evictions == 0);
  allocator.deallocate(b, 0);  // 26: a, the oldest, goes
  REQUIRE(allocator.stats().evictions == 1);
  REQUIRE(source.freed == std::vector<void*>{a});
  allocator.deallocate(c, 0);  // 30: b goes
  REQUIRE(source.freed == std::vector<void*>{a, b});
  auto stats = allocator.stats();
  REQUIRE(stats.bytes_cached == static_cast<int64_t>(16 * kMiB));
  REQUIRE(stats.evictions == 2);
  REQUIRE(stats.free_calls == 2);
  REQUIRE(stats.segments == 1);
  REQUIRE(stats.peak_bytes_reserved == static_cast<int64_t>(42 * kMiB));

  // A segment that still holds a live block cannot be returned, whatever the bound says.
  allocator.set_max_cached_bytes(0);  // c's segment goes at once
  REQUIRE(allocator.stats().segments == 0);
  void* small = allocator.allocate(3 * kMiB);  // a 20 MiB segment, 17 MiB of it cached
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(17 * kMiB));
  allocator.deallocate(allocator.allocate(1000), 0);  // a free over the bound: only the whole small segment goes
  REQUIRE(allocator.stats().segments == 1);
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(17 * kMiB));
  allocator.deallocate(small, 0);                      // now whole: freed
  stats = allocator.stats();
  REQUIRE(stats.segments == 0);
  REQUIRE(stats.bytes_reserved == 0);
  REQUIRE(allocator.check_invariants().empty());

  // While a capture pool is open nothing is cudaFree'd; the bound holds again once it is released.
  void* shared = allocator.allocate(12 * kMiB);
  const int64_t frees = allocator.stats().free_calls;
  const auto pool = allocator.begin_capture_pool();
  std::thread other([&] { allocator.deallocate(shared, 0); });  // not the capturing thread: shared cache
  other.join();
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(12 * kMiB));
  allocator.set_max_cached_bytes(0);
  allocator.end_capture_pool();
  REQUIRE(allocator.stats().free_calls == frees);
  allocator.release_pool(pool);
  REQUIRE(allocator.stats().free_calls == frees + 1);
  REQUIRE(allocator.stats().bytes_reserved == 0);
  REQUIRE(source.live_segments() == 0);
}

TEST_CASE("a private pool's blocks never reach the shared cache while the pool lives", "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  void* before = allocator.allocate(7000);  // shared, in use when the capture starts, freed during it
  void* s = allocator.allocate(3000);
  allocator.deallocate(s, 0);  // merged back into the shared rest of the segment

  const auto pool = allocator.begin_capture_pool();
  void* a = allocator.allocate(3000);  // from the shared rest: a part joins the pool
  REQUIRE(a == s);
  void* b = allocator.allocate(5000);  // the next part
  REQUIRE(b == offset(a, 3072));
  allocator.deallocate(b, 0);  // to the pool, not merged with the shared rest after it
  REQUIRE(allocator.stats().bytes_pooled == 5120);
  void* c = allocator.allocate(4000);  // the pool's own block first (split: 1024 stay in the pool)
  REQUIRE(c == b);
  REQUIRE(allocator.stats().bytes_pooled == 1024);
  void* l = allocator.allocate(12 * kMiB);  // a new segment, cudaMalloc'd in relaxed capture mode
  REQUIRE(source.capturing_mallocs == 1);
  allocator.deallocate(before, 0);  // a shared block freed during the capture joins the pool
  allocator.end_capture_pool();
  for (void* p : {a, c, l}) allocator.deallocate(p, 0);  // pool blocks freed after it stay in it
  auto stats = allocator.stats();
  const int64_t pooled = 7168 + 3072 + 5120 + static_cast<int64_t>(12 * kMiB);
  REQUIRE(stats.bytes_pooled == pooled);
  REQUIRE(allocator.check_invariants().empty());

  // Shared requests of every size now: none may land in the pool's ranges, and the pool keeps all.
  const auto in_pool = [&](void* p, size_t bytes) {
    const uintptr_t lo = address(p), hi = lo + bytes;
    const bool first = lo < address(before) + 15360 && address(before) < hi;
    const bool second = lo < address(l) + 12 * kMiB && address(l) < hi;
    return first || second;
  };
  Rng rng(5);
  std::vector<std::pair<void*, size_t>> outside;
  for (int i = 0; i < 300; ++i) {
    const size_t bytes = i % 50 == 49 ? 12 * kMiB : 1 + rng.below(2 * kMiB);
    void* p = allocator.allocate(bytes);
    REQUIRE_FALSE(in_pool(p, bytes));
    outside.emplace_back(p, bytes);
  }
  REQUIRE(allocator.stats().bytes_pooled == pooled);
  for (const auto& block : outside) allocator.deallocate(block.first, block.second);
  REQUIRE(allocator.check_invariants().empty());

  // Another pool does not get this one's blocks either.
  const auto other = allocator.begin_capture_pool();
  void* o = allocator.allocate(3000);
  REQUIRE_FALSE(in_pool(o, 3000));
  allocator.end_capture_pool();
  allocator.deallocate(o, 0);
  allocator.release_pool(other);

  // Released: its free blocks join the shared cache and merge with their shared neighbours.
  stats = allocator.stats();
  allocator.release_pool(pool);
  REQUIRE(allocator.stats().bytes_pooled == 0);
  REQUIRE(allocator.stats().bytes_cached == stats.bytes_cached + pooled);
  REQUIRE(allocator.check_invariants().empty());
  allocator.release_cached();  // every segment is whole again
  REQUIRE(allocator.stats().segments == 0);
  REQUIRE(source.live_segments() == 0);
}

TEST_CASE("a pool block still in use at release_pool goes to the shared cache when freed", "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  const auto pool = allocator.begin_capture_pool();
  void* x = allocator.allocate(3000);
  allocator.end_capture_pool();
  allocator.release_pool(pool);
  const int64_t cached = allocator.stats().bytes_cached;
  allocator.deallocate(x, 0);
  REQUIRE(allocator.stats().bytes_pooled == 0);
  REQUIRE(allocator.stats().bytes_cached == cached + 3072);
  REQUIRE(allocator.check_invariants().empty());
  void* y = allocator.allocate(3000);  // anyone may have it now
  REQUIRE(y == x);
  allocator.deallocate(y, 0);
}

TEST_CASE("fifty retraining rounds of changing shapes keep reserved bytes bounded (fake addresses)",
          "[memory][host]") {
  TestSegmentSource source;
  CachingAllocator allocator(kRoundsMaxCached, &source);
  const BlockHook none = [](void*, size_t, uint8_t) {};
  const RoundsReport report = run_rounds(allocator, none, none);
  require_rounds_bounded(allocator.stats(), report);
  REQUIRE(allocator.check_invariants().empty());
  REQUIRE(source.live_bytes() == static_cast<size_t>(allocator.stats().bytes_reserved));
  REQUIRE(source.bad_frees == 0);
}

TEST_CASE("zero bytes, foreign pointers and wrapping sizes", "[memory][host]") {
  TestSegmentSource source(kMiB * 1024);
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  REQUIRE(allocator.allocate(0) == nullptr);
  allocator.deallocate(nullptr, 0);
  int not_a_block = 0;
  allocator.deallocate(&not_a_block, sizeof not_a_block);  // logged and ignored
  REQUIRE_THROWS_AS(allocator.allocate(static_cast<size_t>(-4)), CudaError);
  REQUIRE_THROWS_AS(allocator.allocate(SIZE_MAX), CudaError);
  REQUIRE_THROWS_AS(allocator.allocate(SIZE_MAX - 4 * kMiB), CudaError);  // rounds, then cannot be had
  const auto stats = allocator.stats();
  REQUIRE(stats.bytes_in_use == 0);
  REQUIRE(stats.bytes_reserved == 0);
  REQUIRE(stats.malloc_calls == 2);  // only the last one reached cudaMalloc (and its retry)
  REQUIRE(CachingAllocator::segment_size(256) == CachingAllocator::kSmallSegmentBytes);
  REQUIRE(CachingAllocator::segment_size(kMiB) == CachingAllocator::kSmallSegmentBytes);
  REQUIRE(CachingAllocator::segment_size(kMiB + 256) == CachingAllocator::kMediumSegmentBytes);
  REQUIRE(CachingAllocator::segment_size(10 * kMiB - 256) == CachingAllocator::kMediumSegmentBytes);
  REQUIRE(CachingAllocator::segment_size(10 * kMiB) == 10 * kMiB);
  REQUIRE(CachingAllocator::segment_size(10 * kMiB + 256) == 12 * kMiB);
  REQUIRE(allocator.check_invariants().empty());
}

#ifndef NNR_MEMORY_HOST_TESTS_ONLY
// ---------------------------------------------------------------------------------------------
// On the GPU.

TEST_CASE("device buffer round-trips host data and moves without copying", "[cuda][memory]") {
  test::Stream stream;
  const std::vector<float> host{1.0f, -2.5f, 3.25f, 0.0f, 7.0f};
  DeviceBuffer a(host.size() * sizeof(float));
  a.copy_from_host(host.data(), host.size() * sizeof(float), stream);
  void* block = a.data();
  DeviceBuffer b(std::move(a));
  REQUIRE(a.data() == nullptr);
  REQUIRE(a.bytes() == 0);
  REQUIRE(b.data() == block);
  std::vector<float> back(host.size());
  b.copy_to_host(back.data(), back.size() * sizeof(float), stream);
  REQUIRE(back == host);
  REQUIRE_THROWS_AS(b.copy_to_host(back.data(), 1024, stream), Error);
}

// All four sizes are small requests (at most 1 MiB) and together fit in one 2 MiB segment, so the
// first iteration makes one cudaMalloc and splits the rest from it (before best fit with
// splitting, it made one cudaMalloc per size).
TEST_CASE("caching allocator serves repeated same-size allocations with no new cudaMalloc", "[cuda][memory]") {
  CachingAllocator allocator;
  const std::vector<size_t> sizes{4000, 37 * sizeof(float), size_t{1} << 20, 1};
  for (int iteration = 0; iteration < 100; ++iteration) {
    std::vector<DeviceBuffer> live;
    for (const size_t bytes : sizes) live.emplace_back(bytes, allocator);
    if (iteration == 0) REQUIRE(allocator.stats().malloc_calls == 1);
  }
  const auto stats = allocator.stats();
  REQUIRE(stats.malloc_calls == 1);  // only the first iteration
  REQUIRE(stats.free_calls == 0);
  REQUIRE(stats.cache_hits == 100 * static_cast<int64_t>(sizes.size()) - 1);
  REQUIRE(stats.bytes_in_use == 0);
  REQUIRE(allocator.check_invariants().empty());
  allocator.release_cached();
  REQUIRE(allocator.stats().free_calls == 1);
  REQUIRE(allocator.stats().bytes_cached == 0);
}

// A size whose rounding to 256 bytes wraps (here to 0, as a negative count cast to size_t) must
// fail like any impossible request, not come back as nullptr or a tiny block.
TEST_CASE("caching allocator rejects a request whose rounded size would wrap", "[cuda][memory]") {
  CachingAllocator allocator;
  REQUIRE_THROWS_AS(allocator.allocate(static_cast<size_t>(-4)), CudaError);
  REQUIRE_THROWS_AS(allocator.allocate(SIZE_MAX), CudaError);
  const auto stats = allocator.stats();
  REQUIRE(stats.bytes_in_use == 0);
  REQUIRE(stats.bytes_cached == 0);
  DeviceBuffer ok(100, allocator);  // the allocator still works afterwards
  REQUIRE(ok.data() != nullptr);
}

// A training-step-shaped loop: temporaries for activations, probabilities, gradients, the loss
// and the penalty value are allocated and freed every step, kernels run on them, and after the
// first step the allocator never calls cudaMalloc or cudaFree again.
TEST_CASE("steady-state training loop performs no cudaMalloc or cudaFree after its first step", "[cuda][memory]") {
  test::Stream stream;
  CachingAllocator allocator;
  Rng rng(71);
  const int64_t batch = 257, classes = 10, params = classes * 37;
  test::DeviceArray<float> theta(test::random_normal(params, rng), stream), anchor(test::random_normal(params, rng), stream),
      velocity(std::vector<float>(params, 0.0f), stream), bias(test::random_normal(classes, rng), stream);
  std::vector<int32_t> host_labels(batch);
  for (auto& l : host_labels) l = static_cast<int32_t>(rng.below(classes));
  test::DeviceArray<int32_t> labels(host_labels, stream);
  const auto host_logits = test::random_normal(static_cast<size_t>(batch * classes), rng);

  int64_t mallocs_after_first = -1, allocations = 0;
  for (int step = 0; step < 20; ++step) {
    DeviceBuffer logits(batch * classes * sizeof(float), allocator);
    DeviceBuffer probs(batch * classes * sizeof(float), allocator);
    DeviceBuffer dlogits(batch * classes * sizeof(float), allocator);
    DeviceBuffer grad(params * sizeof(float), allocator);
    DeviceBuffer scalars(2 * sizeof(double), allocator);
    DeviceBuffer workspace(kernels::reduce_workspace_bytes(params), allocator);
    for (const DeviceBuffer* b : {&logits, &probs, &dlogits, &grad, &scalars, &workspace})
      allocations += b->empty() ? 0 : 1;
    NNR_CUDA_CHECK(cudaMemcpyAsync(logits.data(), host_logits.data(), logits.bytes(), cudaMemcpyHostToDevice, stream));
    kernels::add_bias(logits.as<float>(), bias.get(), batch, classes, 1, stream);
    kernels::relu_forward(logits.as<float>(), logits.as<float>(), batch * classes, stream);
    kernels::softmax_cross_entropy_forward(logits.as<float>(), labels.get(), batch, classes, probs.as<float>(),
                                  scalars.as<double>(), stream);
    kernels::softmax_cross_entropy_backward(probs.as<float>(), labels.get(), batch, classes, 1.0f / batch, dlogits.as<float>(),
                                   stream);
    NNR_CUDA_CHECK(cudaMemcpyAsync(grad.data(), dlogits.data(), grad.bytes(), cudaMemcpyDeviceToDevice, stream));
    kernels::PenaltyArgs penalty;
    penalty.anchor = anchor.get();
    penalty.lambda = 0.1f;
    penalty.want_value = true;
    penalty.value = scalars.as<double>() + 1;
    kernels::sgd_update(theta.get(), grad.as<float>(), velocity.get(), params, {0.01f, 0.9f, 0.0f, false}, {}, penalty,
                        stream);
    kernels::l2_norm(theta.get(), params, scalars.as<double>(), workspace.data(), stream);
    stream.sync();
    if (step == 0) mallocs_after_first = allocator.stats().malloc_calls;
  }
  const auto stats = allocator.stats();
  REQUIRE(mallocs_after_first > 0);
  REQUIRE(stats.malloc_calls == mallocs_after_first);
  REQUIRE(stats.free_calls == 0);
  // Every allocation but the first step's cudaMallocs came from the cache (the first step's
  // other blocks were split from the segments it made).
  REQUIRE(stats.cache_hits == allocations - mallocs_after_first);
}

TEST_CASE("a failing CUDA call throws CudaError naming the call, file and line", "[cuda][memory]") {
  int count = 0;
  NNR_CUDA_CHECK(cudaGetDeviceCount(&count));
  try {
    NNR_CUDA_CHECK(cudaSetDevice(count + 5));
    FAIL("no exception");
  } catch (const CudaError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("cudaSetDevice(count + 5)") != std::string::npos);
    REQUIRE(what.find("device_memory_test.cpp:") != std::string::npos);
    REQUIRE(what.find("[cuda]") == 0);
  }
  // The runtime remembers the failure as its last error; reading it clears it. cudaErrorInvalidDevice
  // is not sticky, so the context still works.
  const cudaError_t last = cudaGetLastError();
  REQUIRE((last == cudaErrorInvalidDevice || last == cudaSuccess));
  NNR_CUDA_CHECK(cudaFree(nullptr));
}

// The rounds on real memory: every block gets its own tag byte written over all of it, checked at
// its first and last byte when it is freed, so blocks handed out twice or overlapping show.
TEST_CASE("fifty retraining rounds of changing shapes keep reserved bytes bounded", "[cuda][memory]") {
  test::Stream stream;
  TestSegmentSource source(SIZE_MAX, &kernels::cuda_segment_source());  // counts, and checks every cudaFree
  CachingAllocator allocator(kRoundsMaxCached, &source);
  const BlockHook fill = [&](void* p, size_t bytes, uint8_t tag) {
    NNR_CUDA_CHECK(cudaMemsetAsync(p, tag, bytes, stream));
  };
  const BlockHook verify = [&](void* p, size_t bytes, uint8_t tag) {
    uint8_t ends[2] = {0, 0};
    NNR_CUDA_CHECK(cudaMemcpyAsync(&ends[0], p, 1, cudaMemcpyDeviceToHost, stream));
    NNR_CUDA_CHECK(cudaMemcpyAsync(&ends[1], static_cast<uint8_t*>(p) + bytes - 1, 1, cudaMemcpyDeviceToHost, stream));
    stream.sync();
    REQUIRE(ends[0] == tag);
    REQUIRE(ends[1] == tag);
  };
  const RoundsReport report = run_rounds(allocator, fill, verify);
  require_rounds_bounded(allocator.stats(), report);
  REQUIRE(source.bad_frees == 0);
  allocator.release_cached();
  REQUIRE(source.live_segments() == 0);
}

TEST_CASE("an out-of-memory cudaMalloc is answered by freeing the cache and retrying", "[cuda][memory]") {
  test::Stream stream;
  TestSegmentSource source(SIZE_MAX, &kernels::cuda_segment_source());
  CachingAllocator allocator(CachingAllocator::kDefaultMaxCachedBytes, &source);
  allocator.deallocate(allocator.allocate(40 * kMiB), 0);
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(40 * kMiB));

  source.fail_next = 1;  // the device is "full" once: the cached 40 MiB are freed, then it works
  {
    DeviceBuffer buffer(50 * kMiB, allocator);
    buffer.fill_bytes(7, stream);
    uint8_t last = 0;
    NNR_CUDA_CHECK(
        cudaMemcpyAsync(&last, buffer.as<uint8_t>() + buffer.bytes() - 1, 1, cudaMemcpyDeviceToHost, stream));
    stream.sync();
    REQUIRE(last == 7);
    const auto stats = allocator.stats();
    REQUIRE(stats.oom_retries == 1);
    REQUIRE(stats.free_calls == 1);
    REQUIRE(stats.bytes_cached == 0);
  }
  source.fail_next = 2;  // full twice: it throws, naming the numbers
  try {
    DeviceBuffer buffer(60 * kMiB, allocator);
    FAIL("no exception");
  } catch (const CudaError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE(what.find("request of 62914560 bytes") != std::string::npos);
    REQUIRE(what.find("in use 0 bytes") != std::string::npos);
  }
  REQUIRE(allocator.stats().oom_retries == 2);

  // A real out-of-memory (a petabyte): the same path, and no error is left behind for the next
  // kernel launch check.
  REQUIRE_THROWS_AS(allocator.allocate(size_t{1} << 50), CudaError);
  REQUIRE(allocator.stats().oom_retries == 3);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  DeviceBuffer after(1000, allocator);
  after.fill_bytes(0, stream);
  stream.sync();
  REQUIRE(allocator.check_invariants().empty());
}

TEST_CASE("the cuBLAS and cuDNN workspaces are borrowed from the allocator", "[cuda][memory]") {
  test::Stream stream;
  CachingAllocator allocator;
  {
    kernels::BlasHandle blas(stream, allocator);
    REQUIRE(blas.workspace_bytes() == kernels::BlasHandle::kDefaultWorkspaceBytes);
    REQUIRE(allocator.stats().bytes_in_use == static_cast<int64_t>(kernels::BlasHandle::kDefaultWorkspaceBytes));
    test::DeviceArray<float> a(std::vector<float>{1, 2, 3, 4, 5, 6}, stream);  // [2, 3]
    test::DeviceArray<float> b(std::vector<float>{1, 0, 0, 1, 1, 1}, stream);  // [3, 2]
    test::DeviceArray<float> c(4, stream);
    kernels::gemm(blas, a.get(), false, b.get(), false, c.get(), 2, 2, 3, 1.0f, 0.0f);
    REQUIRE(c.download() == std::vector<float>{4, 5, 10, 11});
  }
  REQUIRE(allocator.stats().bytes_in_use == 0);
  REQUIRE(allocator.stats().bytes_cached == static_cast<int64_t>(kernels::BlasHandle::kDefaultWorkspaceBytes));
#ifdef NNR_WITH_CUDNN
  {
    kernels::DnnHandle dnn(stream, allocator);
    kernels::ConvShape shape;
    shape.n = 8;
    shape.c = 16;
    shape.h = shape.w = 31;
    shape.o = 32;
    shape.kh = shape.kw = 3;
    shape.padding = 1;
    test::DeviceArray<float> x(std::vector<float>(8 * 16 * 31 * 31, 1.0f), stream),
        w(std::vector<float>(32 * 16 * 3 * 3, 0.5f), stream), y(static_cast<size_t>(8 * 32 * 31 * 31), stream),
        dx(static_cast<size_t>(8 * 16 * 31 * 31), stream), dw(static_cast<size_t>(32 * 16 * 3 * 3), stream);
    dnn.conv2d_forward(x.get(), w.get(), shape, y.get());
    dnn.conv2d_backward_data(y.get(), w.get(), shape, dx.get());
    dnn.conv2d_backward_filter(x.get(), y.get(), shape, dw.get(), false);
    stream.sync();
    const int64_t in_use = allocator.stats().bytes_in_use;
    INFO("cuDNN workspace " << dnn.workspace_bytes() << " bytes, allocator in use " << in_use);
    if (dnn.workspace_bytes() == 0) {
      REQUIRE(in_use == 0);
    } else {
      REQUIRE(in_use >= static_cast<int64_t>(CachingAllocator::rounded_size(dnn.workspace_bytes())));
      REQUIRE(in_use < static_cast<int64_t>(dnn.workspace_bytes() + CachingAllocator::kSmallSegmentBytes));
    }
  }
  REQUIRE(allocator.stats().bytes_in_use == 0);
#endif
  REQUIRE(allocator.check_invariants().empty());
}
#endif  // NNR_MEMORY_HOST_TESTS_ONLY
