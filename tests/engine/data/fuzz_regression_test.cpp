// The fuzzers' inputs for the data parsers (fuzz/regressions/ and fuzz/corpus/ of idx, csv, npy)
// replayed through the same calls as the fuzz targets (fuzz/targets.h): every regression input
// must end in a clean nnr::Error that names the file (or load), every seed must load. Under the
// ASan + UBSan build this also proves them free of memory errors and undefined behaviour.
#include <catch2/catch.hpp>

#include "fuzz/replay.h"
#include "fuzz/targets.h"

namespace {

using Run = std::string (*)(const uint8_t*, size_t);

void replay(const std::string& target, Run run) {
  for (const std::string& kind : {std::string("regressions"), std::string("corpus")}) {
    for (const std::string& file : nnr::fuzz::committed_inputs(kind, target)) {
      INFO(file);
      const std::vector<uint8_t> bytes = nnr::fuzz::file_contents(file);
      std::string error;
      REQUIRE_NOTHROW(error = run(bytes.data(), bytes.size()));
      if (kind == "corpus") CHECK(error.empty());
      if (!error.empty()) CHECK(error.find("/proc/self/fd/") != std::string::npos);  // names the file
    }
  }
}

}  // namespace

TEST_CASE("fuzz inputs: idx regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "idx").empty());
  replay("idx", nnr::fuzz::run_idx);
}

TEST_CASE("fuzz inputs: csv regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "csv").empty());
  replay("csv", nnr::fuzz::run_csv);
}

TEST_CASE("fuzz inputs: npy regressions fail cleanly and seeds load", "[fuzz]") {
  REQUIRE_FALSE(nnr::fuzz::committed_inputs("corpus", "npy").empty());
  replay("npy", nnr::fuzz::run_npy);
}
