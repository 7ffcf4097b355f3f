#pragma once
// Shared harness of the kernel microbenchmarks (bench_masked_update, bench_softmax_cross_entropy,
// bench_reduce): CUDA-event timing of N repeats after warmups, an L2 flush before each repeat,
// the device-to-device copy bandwidth measured in the same run as the yardstick, and JSON output.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"

namespace nnr::bench {

struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
  int repeats = 0;
};

class KernelTimer {
 public:
  explicit KernelTimer(cudaStream_t stream) : stream_(stream) {
    NNR_CUDA_CHECK(cudaEventCreate(&start_));
    NNR_CUDA_CHECK(cudaEventCreate(&stop_));
    int device = 0;
    NNR_CUDA_CHECK(cudaGetDevice(&device));
    NNR_CUDA_CHECK(cudaGetDeviceProperties(&prop_, device));
    // Twice the L2 size, written before each repeat, evicts what the previous repeat left there.
    flush_ = kernels::DeviceBuffer(static_cast<size_t>(std::max(prop_.l2CacheSize, 1 << 20)) * 2);
  }
  ~KernelTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

  const cudaDeviceProp& device() const { return prop_; }

  // Runs `body` `warmups` times, then `repeats` times, each timed alone with events after an L2
  // flush (when flush_l2); `before` (untimed) runs before each launch, e.g. to restore inputs.
  Timing time(const std::function<void()>& body, int warmups, int repeats, bool flush_l2 = true,
              const std::function<void()>& before = {}) {
    for (int i = 0; i < warmups; ++i) {
      if (before) before();
      body();
    }
    NNR_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      if (before) before();
      if (flush_l2) NNR_CUDA_CHECK(cudaMemsetAsync(flush_.data(), i & 0xff, flush_.bytes(), stream_));
      NNR_CUDA_CHECK(cudaEventRecord(start_, stream_));
      body();
      NNR_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      NNR_CUDA_CHECK(cudaEventSynchronize(stop_));
      float elapsed = 0.0f;
      NNR_CUDA_CHECK(cudaEventElapsedTime(&elapsed, start_, stop_));
      ms.push_back(elapsed);
    }
    std::sort(ms.begin(), ms.end());
    Timing t;
    t.repeats = repeats;
    t.min_ms = ms.front();
    t.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
    return t;
  }

  // Device-to-device cudaMemcpyAsync bandwidth in GB/s (read + write bytes counted), median of
  // `repeats`, for a copy of `bytes` bytes (at least 4× L2 so it streams from HBM).
  double copy_bandwidth_gbs(size_t bytes, int warmups, int repeats) {
    bytes = std::max(bytes, static_cast<size_t>(prop_.l2CacheSize) * 4);
    kernels::DeviceBuffer src(bytes), dst(bytes);
    NNR_CUDA_CHECK(cudaMemsetAsync(src.data(), 1, bytes, stream_));
    const Timing t = time(
        [&] { NNR_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream_)); },
        warmups, repeats);
    return 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e6);
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  cudaDeviceProp prop_{};
  kernels::DeviceBuffer flush_;
};

inline double gbs(double bytes, double ms) { return bytes / (ms * 1e6); }

inline std::string git_hash() {
#ifdef NNR_GIT_HASH
  return NNR_GIT_HASH;
#else
  return "unknown";
#endif
}

// Common flags: --n N --repeats R --warmups W --json
struct CommonFlags {
  int64_t n = 10'000'000;
  int repeats = 50;
  int warmups = 10;
  bool json = false;
};

// Parses "--name value" pairs and "--json"; unknown flags are an error naming the flag.
inline bool parse_flag(int& i, int argc, char** argv, const char* name, std::string& out) {
  if (std::string(argv[i]) != name) return false;
  if (i + 1 >= argc) throw std::runtime_error(std::string(name) + " needs a value");
  out = argv[++i];
  return true;
}

inline int64_t parse_count(const std::string& text, const char* flag) {
  // Accepts 1000000, 1e6, 10M, 100M, 1k.
  double v = 0.0;
  char suffix = 0;
  if (std::sscanf(text.c_str(), "%lf%c", &v, &suffix) < 1 || v < 0)
    throw std::runtime_error(std::string(flag) + ": not a count: " + text);
  if (suffix == 'k' || suffix == 'K') v *= 1e3;
  if (suffix == 'm' || suffix == 'M') v *= 1e6;
  if (suffix == 'g' || suffix == 'G') v *= 1e9;
  return static_cast<int64_t>(v + 0.5);
}

inline void check_repeats(const CommonFlags& f) {
  if (f.repeats < 50) throw std::runtime_error("--repeats must be >= 50, got " + std::to_string(f.repeats));
  if (f.warmups < 10) throw std::runtime_error("--warmups must be >= 10, got " + std::to_string(f.warmups));
}

}  // namespace nnr::bench
