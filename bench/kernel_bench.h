#pragma once
// Shared harness of the kernel microbenchmarks, one per kernel family (bench/bench_<op>.cpp):
//   - the common flags (CLI11): --repeats (>= 50) --warmups (>= 10) --json, and counts such as
//     --n that take 1000000, 1e6, 10M, 1k;
//   - BenchDevice: where an op runs, through the engine's backend interface: the CPU backend (the
//     *_cpu references, timed with a steady clock) in every build, and a CUDA Context's backend
//     (the launchers, timed with CUDA events after an L2 flush: KernelTimer) in CUDA builds
//     (NNR_BENCH_CUDA) when a GPU is usable;
//   - output: one JSON object per line (--json) or one "key=value" line per measurement.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "engine/core/context.h"
#include "engine/core/rng.h"
#include "engine/core/threads.h"

#ifdef NNR_BENCH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#endif

namespace nnr::bench {

struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
  int repeats = 0;
};

inline Timing summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.repeats = static_cast<int>(ms.size());
  t.min_ms = ms.front();
  t.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  return t;
}

// `body` `warmups` times, then `repeats` times each timed alone on the host's steady clock.
inline Timing time_host(const std::function<void()>& body, int warmups, int repeats) {
  for (int i = 0; i < warmups; ++i) body();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    body();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return summarize(std::move(ms));
}

#ifdef NNR_BENCH_CUDA
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
    return summarize(std::move(ms));
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

#endif  // NNR_BENCH_CUDA

inline double gbs(double bytes, double ms) { return bytes / (ms * 1e6); }

inline std::string git_hash() {
#ifdef NNR_GIT_HASH
  return NNR_GIT_HASH;
#else
  return "unknown";
#endif
}

// 1000000, 1e6, 10M, 100M, 1k -> the count.
inline int64_t parse_count(const std::string& text, const std::string& flag) {
  double v = 0.0;
  char suffix = 0;
  if (std::sscanf(text.c_str(), "%lf%c", &v, &suffix) < 1 || v < 0)
    throw CLI::ValidationError(flag, "not a count: " + text);
  if (suffix == 'k' || suffix == 'K') v *= 1e3;
  if (suffix == 'm' || suffix == 'M') v *= 1e6;
  if (suffix == 'g' || suffix == 'G') v *= 1e9;
  return static_cast<int64_t>(v + 0.5);
}

inline CLI::Option* add_count(CLI::App& app, const std::string& name, int64_t& target, const std::string& help) {
  return app.add_option_function<std::string>(name, [&target, name](const std::string& v) { target = parse_count(v, name); },
                                               help + " (default " + std::to_string(target) + ")");
}

struct CommonFlags {
  int64_t n = 10'000'000;
  int repeats = 50;
  int warmups = 10;
  bool json = false;
  std::string device = "all";  // cpu | cuda | all (cuda only where usable)
};

// --repeats --warmups --json, and --n unless n_help is empty.
inline void add_common_flags(CLI::App& app, CommonFlags& f, const std::string& n_help = "") {
  if (!n_help.empty()) add_count(app, "--n", f.n, n_help);
  app.add_option("--repeats", f.repeats, "Timed runs (>= 50)")->check(CLI::Range(50, 1 << 20))->capture_default_str();
  app.add_option("--warmups", f.warmups, "Untimed runs first (>= 10)")->check(CLI::Range(10, 1 << 20))->capture_default_str();
  app.add_flag("--json", f.json, "One JSON object per line");
}

// --device for the benchmarks that run on both backends.
inline void add_device_flag(CLI::App& app, CommonFlags& f) {
  app.add_option("--device", f.device, "cpu, cuda, or all (the CPU, and the GPU when one is usable)")
      ->check(CLI::IsMember({"cpu", "cuda", "all"}))
      ->capture_default_str();
}

// Parses the flags, then runs `body`: a flag error exits 2, any other error 1.
inline int run_main(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// One measurement: a JSON line with --json, else its fields as key=value on one line.
inline void print_row(const CommonFlags& f, const nlohmann::ordered_json& row) {
  if (f.json) {
    std::printf("%s\n", row.dump().c_str());
  } else {
    std::string line;
    for (const auto& [key, value] : row.items())
      line += (line.empty() ? "" : " ") + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

// The fields every row starts with.
inline nlohmann::ordered_json row_of(const std::string& benchmark, const std::string& device) {
  return {{"benchmark", benchmark}, {"device", device}, {"git", git_hash()}};
}

inline void add_timing(nlohmann::ordered_json& row, const Timing& t) {
  row["repeats"] = t.repeats;
  row["median_ms"] = t.median_ms;
  row["min_ms"] = t.min_ms;
}

// bytes, the timing, the achieved GB/s and, when copy_gbs > 0, its share of the device-to-device
// copy bandwidth measured in the same run.
inline void add_bandwidth(nlohmann::ordered_json& row, double bytes, const Timing& t, double copy_gbs = 0.0) {
  row["bytes"] = bytes;
  add_timing(row, t);
  const double g = gbs(bytes, t.median_ms);
  row["gbs"] = g;
  if (copy_gbs > 0.0) {
    row["copy_gbs"] = copy_gbs;
    row["pct_copy"] = 100.0 * g / copy_gbs;
  }
}

// Where a benchmark runs an op: the CPU backend, or the backend of a CUDA Context. Arrays it copies
// in live on its device and are freed with it.
class BenchDevice {
 public:
  BenchDevice() : backend_(&cpu_backend()) {}
  explicit BenchDevice(Context& context) : context_(&context), backend_(&context.backend()) {}
  ~BenchDevice() {
    for (const auto& [block, bytes] : blocks_) context_->deallocate_floats(block, bytes);
  }
  BenchDevice(const BenchDevice&) = delete;
  BenchDevice& operator=(const BenchDevice&) = delete;

  Backend& backend() { return *backend_; }
  bool is_cuda() const { return context_ != nullptr; }
  std::string name() const {
    return context_ ? context_->gpu_name() : "cpu (" + std::to_string(num_threads()) + " threads)";
  }

  // A copy of `host` on this device.
  template <typename T>
  T* copy(const std::vector<T>& host) {
    if (!context_) {
      host_.push_back(std::make_shared<std::vector<T>>(host));
      return static_cast<std::vector<T>*>(host_.back().get())->data();
    }
    const size_t bytes = std::max<size_t>(host.size() * sizeof(T), sizeof(float));
    float* block = context_->allocate_floats(bytes);
    blocks_.emplace_back(block, bytes);
    if (!host.empty()) context_->upload(block, host.data(), host.size() * sizeof(T));
    return reinterpret_cast<T*>(block);
  }
  template <typename T>
  std::vector<T> read(const T* data, size_t count) {
    std::vector<T> out(count);
    if (!context_) std::copy(data, data + count, out.begin());
    else if (count) context_->download(out.data(), data, count * sizeof(T));
    return out;
  }

  // Times `body` on this device: CUDA events after an L2 flush on a GPU, the steady clock on the CPU.
  Timing time(const std::function<void()>& body, const CommonFlags& f) {
    if (!context_) return time_host(body, f.warmups, f.repeats);
#ifdef NNR_BENCH_CUDA
    if (!timer_) timer_ = std::make_unique<KernelTimer>(context_->stream());
    return timer_->time(body, f.warmups, f.repeats);
#else
    throw std::runtime_error("this benchmark was built without CUDA");
#endif
  }

 private:
  Context* context_ = nullptr;
  Backend* backend_;
  std::vector<std::shared_ptr<void>> host_;
  std::vector<std::pair<float*, size_t>> blocks_;
#ifdef NNR_BENCH_CUDA
  std::unique_ptr<KernelTimer> timer_;
#endif
};

// Times `op` on `d` and prints its row: the benchmark, the device, `shape`, the error of the check
// against the CPU (GPU rows), then bytes, timing and GB/s.
inline void measure(BenchDevice& d, const CommonFlags& f, const std::string& benchmark, const std::string& shape,
                    double bytes, const std::function<void()>& op, double check_error) {
  nlohmann::ordered_json row = row_of(benchmark, d.name());
  row["shape"] = shape;
  if (d.is_cuda()) row["check_error"] = check_error;
  add_bandwidth(row, bytes, d.time(op, f));
  print_row(f, row);
}

// Runs `run` on the CPU, then on the GPU when --device asks for it and one is usable (a line on
// stderr says why not otherwise; --device cuda without one is an error).
inline void for_each_device(const CommonFlags& f, const std::function<void(BenchDevice&)>& run) {
  if (f.device != "cuda") {
    BenchDevice cpu;
    run(cpu);
  }
  if (f.device == "cpu") return;
  const std::string why = Context::why_cuda_unavailable();
  if (!why.empty()) {
    if (f.device == "cuda") throw std::runtime_error("--device cuda: " + why);
    std::fprintf(stderr, "GPU half skipped: %s\n", why.c_str());
    return;
  }
  Context context(0);
  {
    BenchDevice gpu(context);
    run(gpu);
  }
  context.synchronize();
}

// Largest |got - want| over the largest |want| (0 when both are all zero); throws, naming `what`,
// when it is above `tolerance` or the sizes differ.
inline double checked_error(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                            const std::string& what) {
  if (got.size() != want.size()) throw std::runtime_error("check failed: " + what + ": sizes differ");
  double worst = 0.0, scale = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  const double error = scale > 0.0 ? worst / scale : worst;
  if (!(error <= tolerance))
    throw std::runtime_error("check failed: " + what + ": error " + std::to_string(error) + " > " + std::to_string(tolerance));
  return error;
}

// n values in [-1, 1) from `seed`.
inline std::vector<float> random_floats(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
  return v;
}

}  // namespace nnr::bench
