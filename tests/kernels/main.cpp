// Entry point of nnr_kernels_tests. Before running any test it checks for a usable CUDA device;
// without one it prints "SKIPPED: ..." with the reason and exits 77, which ctest maps to
// "skipped" through SKIP_RETURN_CODE, so a machine without a GPU never reports these as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/core/context.h"

namespace {

constexpr int kSkipExitCode = 77;

}  // namespace

int main(int argc, char* argv[]) {
  // fp32 comparisons need fp32 math: forbid the driver-wide TF32 override before CUDA starts.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  // The CUDA backend's own check (device, compute capability, a context), so the tests skip
  // exactly where nnr would refuse --device cuda.
  const std::string reason = nnr::Context::why_cuda_unavailable();
  if (!reason.empty()) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    std::fflush(stdout);
    return kSkipExitCode;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("nnr_kernels_tests on %s (compute %d.%d)\n", prop.name, prop.major, prop.minor);
  return Catch::Session().run(argc, argv);
}
