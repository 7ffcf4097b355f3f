// Entry point of nnr_kernels_tests. Before running any test it checks for a usable CUDA device;
// without one it prints "SKIPPED: ..." with the reason and exits 77, which ctest maps to
// "skipped" through SKIP_RETURN_CODE, so a machine without a GPU never reports these as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr int kSkipExitCode = 77;
constexpr int kMinComputeMajor = 8;  // nnr_kernels carries sm_80 / sm_90 code and compute_90 PTX

// Empty when device 0 can run nnr_kernels' code, else why not.
std::string why_no_usable_device() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (count == 0) return "no usable CUDA device (cudaGetDeviceCount returned 0 devices)";
  cudaDeviceProp prop{};
  status = cudaGetDeviceProperties(&prop, 0);
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (prop.major < kMinComputeMajor)
    return std::string("no usable CUDA device (") + prop.name + " has compute capability " +
           std::to_string(prop.major) + "." + std::to_string(prop.minor) + "; nnr_kernels needs 8.0 or newer)";
  status = cudaFree(nullptr);  // creates the context: fails when the device is busy or broken
  if (status != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  return {};
}

}  // namespace

int main(int argc, char* argv[]) {
  // fp32 comparisons need fp32 math: forbid the driver-wide TF32 override before CUDA starts.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  const std::string reason = why_no_usable_device();
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
