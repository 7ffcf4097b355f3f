#pragma once
// For the regression tests: every committed input of a fuzz target (fuzz/regressions/<target>/ and
// fuzz/corpus/<target>/) replayed through its run_<target> (fuzz/targets.h). NNR_SOURCE_DIR is the
// repository root, set by the test's CMakeLists.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
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

}  // namespace nnr::fuzz
