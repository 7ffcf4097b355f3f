#include <sys/resource.h>

#include <algorithm>
#include <cstdint>

#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"

using nnr::Tensor;

TEST_CASE("tensor is zero-filled, owns its data and clones deeply", "[tensor]") {
  Tensor t({3, 7});
  REQUIRE(t.numel() == 21);
  REQUIRE(t.rank() == 2);
  REQUIRE(t.dim(-1) == 7);
  for (int64_t i = 0; i < t.numel(); ++i) REQUIRE(t[i] == 0.0f);
  t[5] = 2.5f;
  Tensor c = t.clone();
  c[5] = -1.0f;
  REQUIRE(t[5] == 2.5f);
  REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
}

TEST_CASE("tensor rejects rank above 4, negative dims and bad reshapes", "[tensor]") {
  REQUIRE_THROWS_WITH(Tensor({1, 2, 3, 4, 5}), Catch::Contains("rank 5 > 4"));
  REQUIRE_THROWS_AS(Tensor({2, -1}), nnr::InvalidArgument);
  Tensor t({2, 6});
  t.reshape({3, 4});
  REQUIRE(t.shape() == nnr::Shape{3, 4});
  REQUIRE_THROWS_WITH(t.reshape({5, 5}), Catch::Contains("cannot view [3, 4] as [5, 5]"));
  REQUIRE_THROWS_WITH(Tensor::from_vector({2, 2}, {1, 2, 3}), Catch::Contains("3 values for shape [2, 2]"));
}

TEST_CASE("a moved-from tensor is empty and a default tensor is undefined", "[tensor]") {
  Tensor a({4});
  Tensor b = std::move(a);
  REQUIRE(b.numel() == 4);
  REQUIRE_FALSE(Tensor().defined());
  REQUIRE(Tensor({0, 5}).defined());
  REQUIRE(Tensor({0, 5}).numel() == 0);
}

TEST_CASE("He and Xavier initialisations have the stated spread and repeat with the seed", "[tensor]") {
  nnr::Rng rng(42);
  Tensor w({200, 300});
  nnr::init_he_normal(w, 300, rng);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    sum += w[i];
    sq += double(w[i]) * w[i];
  }
  const double mean = sum / w.numel(), var = sq / w.numel() - mean * mean;
  // 60000 draws: the sample variance is within 2 % of 2/300 with overwhelming probability.
  REQUIRE(std::abs(mean) < 0.002);
  REQUIRE(var == Approx(2.0 / 300).epsilon(0.02));

  nnr::Rng a(7), b(7);
  Tensor x({50}), y({50});
  nnr::init_xavier_uniform(x, 10, 20, a);
  nnr::init_xavier_uniform(y, 10, 20, b);
  const float bound = std::sqrt(6.0f / 30.0f);
  for (int64_t i = 0; i < 50; ++i) {
    REQUIRE(x[i] == y[i]);
    REQUIRE(std::abs(x[i]) <= bound);
  }
}

TEST_CASE("shape_numel refuses negative dims and int64 overflow, naming the shape", "[tensor]") {
  REQUIRE(nnr::shape_numel({}) == 1);
  REQUIRE(nnr::shape_numel({0, int64_t(1) << 62}) == 0);
  REQUIRE(nnr::shape_numel({int64_t(1) << 31, int64_t(1) << 31}) == int64_t(1) << 62);
  REQUIRE(nnr::shape_numel({3037000499, 3037000499}) == 3037000499LL * 3037000499LL);  // just below 2^63
  REQUIRE_THROWS_AS(nnr::shape_numel({1000000000000, 1000000000000}), nnr::Error);
  REQUIRE_THROWS_WITH(nnr::shape_numel({1000000000000, 1000000000000}),
                      Catch::Contains("shape [1000000000000, 1000000000000] is implausibly large"));
  REQUIRE_THROWS_WITH(nnr::shape_numel({int64_t(1) << 32, int64_t(1) << 31}), Catch::Contains("overflows int64"));
  REQUIRE_THROWS_AS(nnr::shape_numel({2, -3}), nnr::Error);
  REQUIRE_THROWS_WITH(nnr::shape_numel({2, -3}), Catch::Contains("negative dimension in shape [2, -3]"));
  REQUIRE_THROWS_WITH(nnr::shape_numel({0, -1}), Catch::Contains("negative dimension"));  // not hidden by the 0
  int64_t n = -7;
  REQUIRE_FALSE(nnr::try_shape_numel({int64_t(1) << 40, int64_t(1) << 40}, n));
  REQUIRE_FALSE(nnr::try_shape_numel({4, -1}, n));
  REQUIRE(n == -7);
  REQUIRE(nnr::try_shape_numel({2, 3, 4}, n));
  REQUIRE(n == 24);
}

TEST_CASE("tensor refuses shapes whose element or byte count overflows, before allocating", "[tensor]") {
  // 2^63 elements: the element count overflows int64.
  REQUIRE_THROWS_AS(Tensor::empty({int64_t(1) << 61, 4}), nnr::InvalidArgument);
  // 2^62 elements: the count fits, but 4 bytes each would wrap the byte count around to 0.
  REQUIRE_THROWS_WITH(Tensor::empty({int64_t(1) << 31, int64_t(1) << 31}),
                      Catch::Contains("[2147483648, 2147483648] is implausibly large"));
  // A reshape to an overflowing or negative shape is a bad reshape, not a crash.
  Tensor t({2, 2});
  REQUIRE_THROWS_WITH(t.reshape({int64_t(1) << 32, int64_t(1) << 32}), Catch::Contains("cannot view [2, 2] as"));
  REQUIRE_THROWS_WITH(t.reshape({-2, -2}), Catch::Contains("cannot view [2, 2] as [-2, -2]"));
  REQUIRE(t.shape() == nnr::Shape{2, 2});
}

namespace {

long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

Tensor written(int64_t mib) {
  Tensor t = Tensor::empty({mib, int64_t{1} << 18});  // mib MiB of floats
  std::fill(t.data(), t.data() + t.numel(), 1.0f);    // touches every page
  return t;
}

}  // namespace

TEST_CASE("host storage is 64-byte aligned, and a step's freed buffers are reused without page faults", "[tensor]") {
  for (int64_t n : {1, 3, 17, 1000, 262145}) {
    const Tensor t = Tensor::empty({n});
    INFO(n);
    CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  }
  // A training step's pattern: buffers of a few MiB allocated, written and freed in turn. With
  // aligned_alloc glibc grew the heap every step and faulted about 3 000-9 000 pages back in.
  auto step = [] {
    const Tensor a = written(12), b = written(20), c = written(4);
    return a.data()[0] + b.data()[7] + c.data()[3];
  };
  // The first two steps fault their pages in: glibc maps the first large blocks and moves them
  // into the heap once their frees have raised its (adaptive) mmap threshold.
  float sum = step() + step();
  const long before = minor_page_faults();
  for (int i = 0; i < 10; ++i) sum += step();
  const long faults = minor_page_faults() - before;
  CHECK(sum == 36.0f);
#if defined(__SANITIZE_ADDRESS__)
  (void)faults;  // the sanitizer's allocator has its own reuse policy (quarantine)
#else
  INFO("minor page faults over 10 steps of 36 MiB: " << faults << " (one step's pages: " << (36 << 20) / 4096 << ")");
  CHECK(faults < 500);
#endif
}
