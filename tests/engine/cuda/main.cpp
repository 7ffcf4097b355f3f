// Entry point of nnr_engine_cuda_tests. Before any test it asks the engine whether CUDA can run
// (Context::why_cuda_unavailable: a device of compute capability >= 8.0 whose context comes up);
// without one it prints "SKIPPED: ..." with the reason and exits 77, which ctest maps to "skipped"
// through SKIP_RETURN_CODE, so a machine without a GPU never reports these as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/core/context.h"

namespace {
constexpr int kSkipExitCode = 77;
}

int main(int argc, char* argv[]) {
  // The CPU comparisons need fp32 math on the GPU: forbid the driver-wide TF32 override first.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  const std::string reason = nnr::Context::why_cuda_unavailable();
  if (!reason.empty()) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    std::fflush(stdout);
    return kSkipExitCode;
  }
  return Catch::Session().run(argc, argv);
}
