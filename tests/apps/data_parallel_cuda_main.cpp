// Entry point of nnr_data_parallel_cuda_tests: `--gpus N` first, then Catch2's arguments. Before
// any test it checks that nnr can use CUDA (Context::why_cuda_unavailable) and that the machine has
// at least N CUDA devices; otherwise it prints "SKIPPED: ..." with the reason and exits 77, which
// ctest reports as skipped (never as passed) through SKIP_RETURN_CODE.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/core/context.h"

namespace {
constexpr int kSkipExitCode = 77;

int skip(const std::string& why) {
  std::printf("SKIPPED: %s\n", why.c_str());
  std::fflush(stdout);
  return kSkipExitCode;
}
}  // namespace

int main(int argc, char* argv[]) {
  int needed = 1;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--gpus" && i + 1 < argc) needed = std::atoi(argv[++i]);
    else rest.push_back(argv[i]);
  }
  // The CPU comparisons need fp32 math on the GPU: forbid the driver-wide TF32 override first (the
  // nnr processes the tests start inherit it).
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  const std::string reason = nnr::Context::why_cuda_unavailable();
  if (!reason.empty()) return skip(reason);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  if (devices < needed)
    return skip(std::to_string(needed) + " CUDA devices needed (one per rank), " + std::to_string(devices) + " found");
  return Catch::Session().run(static_cast<int>(rest.size()), rest.data());
}
