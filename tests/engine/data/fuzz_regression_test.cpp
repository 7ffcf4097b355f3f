// The fuzzers' inputs for the data parsers (fuzz/regressions/ and fuzz/corpus/ of idx, csv, npy)
// replayed through the same calls as the fuzz targets (fuzz/targets.h): every regression input
// must end in a clean nnr::Error that names the file (or load), every seed must load. Under the
// ASan + UBSan build this also proves them free of memory errors and undefined behaviour.
#include <catch2/catch.hpp>

#include "fuzz/replay.h"
#include "fuzz/targets.h"

using nnr::fuzz::replay;

TEST_CASE("fuzz inputs: idx regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "idx").empty());
  replay("idx", nnr::fuzz::run_idx, true);
}

TEST_CASE("fuzz inputs: csv regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "csv").empty());
  replay("csv", nnr::fuzz::run_csv, true);
}

TEST_CASE("fuzz inputs: npy regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "npy").empty());
  replay("npy", nnr::fuzz::run_npy, true);
}
