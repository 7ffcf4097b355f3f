#pragma once
// For the regression tests: every committed input of a fuzz target (fuzz/regressions/<target>/ and
// fuzz/corpus/<target>/) replayed through its run_<target> (fuzz/targets.h). NNR_SOURCE_DIR is the
// repository root, set by the test's CMakeLists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace nnr::fuzz {

// The files of fuzz/<kind>/<target>/ (kind: "regressions" or "corpus"), sorted; none when absent.
inline std::vector<std::string> committed_inputs(const std::string& kind, const std::string& target) {
  std::vector<std::string> files;
  const std::filesystem::path dir = std::filesystem::path(NNR_SOURCE_DIR) / "fuzz" / kind / target;
  if (!std::filesystem::is_directory(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

inline std::vector<uint8_t> file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

using Run = std::string (*)(const uint8_t*, size_t);

// Replays every committed input of `target` through `run`: none may throw, every seed must load,
// and with names_file every error must name the file it read. Returns the error message of each
// regression input by file name.
inline std::map<std::string, std::string> replay(const std::string& target, Run run, bool names_file) {
  std::map<std::string, std::string> errors;
  for (const std::string kind : {"regressions", "corpus"}) {
    for (const std::string& file : committed_inputs(kind, target)) {
      INFO(file);
      const std::vector<uint8_t> bytes = file_contents(file);
      std::string error;
      REQUIRE_NOTHROW(error = run(bytes.data(), bytes.size()));
      if (kind == "corpus") CHECK(error.empty());
      if (!error.empty() && names_file) CHECK(error.find("/proc/self/fd/") != std::string::npos);
      if (kind == "regressions") errors[std::filesystem::path(file).filename().string()] = error;
    }
  }
  return errors;
}

}  // namespace nnr::fuzz
