// The CPU bias add (kernels/elementwise.cpp) against a plain loop written here: a Linear's
// [outer, channels] output (inner 1, added along the row) and a convolution's [outer, channels,
// inner] planes, awkward sizes, one thread and two, small and over the size that splits rows
// across threads. One float add per element in both, so every comparison is exact.
#include <catch2/catch.hpp>

#include <vector>

#include "engine/core/rng.h"
#include "kernels/elementwise.h"
#include "kernels/thread_pool.h"

using namespace nnr;

TEST_CASE("CPU add_bias equals a plain loop, along rows (inner 1) and over planes", "[elementwise]") {
  struct Case {
    int64_t outer, channels, inner;
  };
  // 131 x 509 x 1 = 66 679 floats: over the parallel threshold; 3 x 7 x 1 and 5 x 3 x 37 under it.
  const std::vector<Case> cases{{3, 7, 1}, {131, 509, 1}, {5, 3, 37}, {67, 33, 31}};
  const int threads_before = kernels::loop_threads();
  Rng rng(17);
  for (const int threads : {1, 2})
    for (const Case& c : cases) {
      kernels::set_loop_threads(threads);
      INFO(threads << " threads, " << c.outer << " x " << c.channels << " x " << c.inner);
      const int64_t n = c.outer * c.channels * c.inner;
      std::vector<float> y(static_cast<size_t>(n)), bias(static_cast<size_t>(c.channels));
      for (float& v : y) v = static_cast<float>(rng.normal());
      for (float& v : bias) v = static_cast<float>(rng.normal());
      std::vector<float> expected = y;
      for (int64_t o = 0; o < c.outer; ++o)
        for (int64_t ch = 0; ch < c.channels; ++ch)
          for (int64_t i = 0; i < c.inner; ++i)
            expected[static_cast<size_t>((o * c.channels + ch) * c.inner + i)] += bias[static_cast<size_t>(ch)];
      kernels::add_bias_cpu(y.data(), bias.data(), c.outer, c.channels, c.inner);
      REQUIRE(y == expected);
    }
  kernels::set_loop_threads(threads_before);
}
