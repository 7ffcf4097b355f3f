#include <vector>

#include <catch2/catch.hpp>

#include "engine/core/rng.h"

TEST_CASE("rng gives the same fixed sequence for a seed on every machine", "[rng]") {
  nnr::Rng a(123), b(123), c(124);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next_u64();
    REQUIRE(x == b.next_u64());
    differs |= x != c.next_u64();
  }
  REQUIRE(differs);
  // Pinned values: a change in the generator would silently change every seeded run.
  nnr::Rng pinned(0);
  REQUIRE(pinned.next_u64() == 0x99ec5f36cb75f2b4ULL);
}

TEST_CASE("rng below(n) is in range and roughly uniform", "[rng]") {
  nnr::Rng r(5);
  int counts[7] = {};
  for (int i = 0; i < 70000; ++i) {
    const uint64_t k = r.below(7);
    REQUIRE(k < 7);
    counts[k]++;
  }
  // Expected 10000 each; 5 standard deviations is about 475.
  for (int c : counts) REQUIRE(std::abs(c - 10000) < 500);
}

TEST_CASE("rng normal has mean 0 and variance 1", "[rng]") {
  nnr::Rng r(9);
  double s = 0, s2 = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double x = r.normal();
    s += x;
    s2 += x * x;
  }
  REQUIRE(std::abs(s / n) < 0.02);
  REQUIRE(std::abs(s2 / n - 1.0) < 0.02);
}

TEST_CASE("Rng state round-trips mid-sequence, spare normal included") {
  nnr::Rng a(42);
  a.next_u64();
  a.normal();  // leaves a spare normal behind
  const nnr::Rng::State saved = a.state();
  std::vector<double> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(a.normal() + a.uniform());
  nnr::Rng b(7);
  b.set_state(saved);
  for (int i = 0; i < 5; ++i) REQUIRE(b.normal() + b.uniform() == expected[static_cast<size_t>(i)]);
}

TEST_CASE("derive_seed gives each component its own seed") {
  REQUIRE(nnr::derive_seed(1, "memory") == nnr::derive_seed(1, "memory"));
  REQUIRE(nnr::derive_seed(1, "memory") != nnr::derive_seed(1, "stream"));
  REQUIRE(nnr::derive_seed(1, "memory") != nnr::derive_seed(2, "memory"));
  REQUIRE(nnr::derive_seed(0, "") != 0);
}
