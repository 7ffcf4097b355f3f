#include "engine/core/threads.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

TEST_CASE("nnr's OpenMP wait is set only where the user chose none", "[threads]") {
  const std::string spin = std::to_string(nnr::kOpenmpSpinCount);
  CHECK(nnr::openmp_spin_count_to_set(nullptr, nullptr, nullptr) == spin);
  CHECK(nnr::openmp_spin_count_to_set(nullptr, nullptr, "") == spin);
  // The user's choice stands.
  CHECK(nnr::openmp_spin_count_to_set("PASSIVE", nullptr, nullptr).empty());
  CHECK(nnr::openmp_spin_count_to_set("ACTIVE", nullptr, nullptr).empty());
  CHECK(nnr::openmp_spin_count_to_set("", nullptr, nullptr).empty());
  CHECK(nnr::openmp_spin_count_to_set(nullptr, "0", nullptr).empty());
  CHECK(nnr::openmp_spin_count_to_set("PASSIVE", "100", nullptr).empty());
  CHECK(nnr::openmp_spin_count_to_set(nullptr, nullptr, "keep").empty());
}

TEST_CASE("a program linking the engine starts with nnr's OpenMP wait unless the user chose one", "[threads]") {
  // This test program links nnr_engine_core: before main it either found the user's choice in the
  // environment or set GOMP_SPINCOUNT and re-executed itself with the marker set.
  const char* marker = std::getenv("NNR_OPENMP_WAIT");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  const std::string description = nnr::openmp_wait_description();
  if (marker && std::string(marker) == "default") {
    REQUIRE(spin != nullptr);
    CHECK(std::string(spin) == std::to_string(nnr::kOpenmpSpinCount));
    CHECK(std::getenv("OMP_WAIT_POLICY") == nullptr);
    CHECK(description == "spin " + std::to_string(nnr::kOpenmpSpinCount) + ", then sleep (nnr's default)");
  } else {
    // Started with a policy of the user's (ctest runs this file once with OMP_WAIT_POLICY=PASSIVE):
    // nothing was overridden.
    const bool chosen = std::getenv("OMP_WAIT_POLICY") || spin || (marker && std::string(marker) == "keep");
    CHECK(chosen);
    if (const char* policy = std::getenv("OMP_WAIT_POLICY"))
      CHECK(description.find(std::string("OMP_WAIT_POLICY=") + policy) != std::string::npos);
  }
}
