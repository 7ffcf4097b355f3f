// Denormal floats flushed to zero on every thread nnr computes on (kernels/denormals.h): the
// loading thread's mode from NNR_DENORMALS, threads inheriting it, and parallel loops running
// their workers' shares in the caller's mode. CMake runs these cases once more with
// NNR_DENORMALS=keep.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/denormals.h"
#include "kernels/thread_pool.h"

using namespace nnr;

namespace {

// 1e-30 · 1e-10 = 1e-40, a denormal: 0 when flushed. `volatile` keeps the compiler from folding it.
float denormal_product() {
  volatile float a = 1e-30f, b = 1e-10f;
  return a * b;
}

bool keep_requested() {
  const char* value = std::getenv("NNR_DENORMALS");
  return value && std::strcmp(value, "keep") == 0;
}

// Whether each of `threads` shares of a parallel loop computed a flushed product.
std::vector<int> flushed_in_shares(int threads) {
  std::vector<int> flushed(static_cast<size_t>(threads), -1);
  kernels::parallel_ranges(
      threads, [&](int share, int64_t, int64_t) { flushed[static_cast<size_t>(share)] = denormal_product() == 0.0f; },
      threads);
  return flushed;
}

}  // namespace

TEST_CASE("denormals are flushed from the start unless NNR_DENORMALS=keep, on this thread, new threads and loop workers",
          "[denormals]") {
#if !(defined(__x86_64__) || defined(__i386__))
  WARN("no flush-to-zero mode on this CPU");
  return;
#endif
  const bool flush = !keep_requested();
  CHECK(kernels::denormals_at_load() == std::string(flush ? "flush" : "keep"));
  CHECK(kernels::flush_denormals() == flush);
  CHECK((denormal_product() == 0.0f) == flush);
  bool in_thread = !flush;
  std::thread([&] { in_thread = denormal_product() == 0.0f; }).join();
  CHECK(in_thread == flush);
  CHECK(flushed_in_shares(3) == std::vector<int>(3, flush ? 1 : 0));
}

TEST_CASE("a loop's workers compute in the calling thread's mode, whatever their own was", "[denormals]") {
#if !(defined(__x86_64__) || defined(__i386__))
  WARN("no flush-to-zero mode on this CPU");
  return;
#endif
  const bool before = kernels::flush_denormals();
  // Alternate the caller's mode: the same pool's workers follow it loop by loop.
  for (const bool flush : {true, false, true, false}) {
    REQUIRE(kernels::set_flush_denormals(flush));
    CHECK((denormal_product() == 0.0f) == flush);
    CHECK(flushed_in_shares(2) == std::vector<int>(2, flush ? 1 : 0));
  }
  kernels::set_flush_denormals(before);
  CHECK(kernels::flush_denormals() == before);
}
