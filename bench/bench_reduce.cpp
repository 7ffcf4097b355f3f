// bench_reduce: whole-array sum / L2 norm and the per-channel bias gradient (kernels/reduce.h).
// Checks against double loops / the CPU bias_backward first, then times each: >= 10 warmups,
// >= 50 repeats with CUDA events after an L2 flush. Bytes by hand: each reads its input once.
//   bench_reduce --n 10M [--channels 256] [--repeats 50] [--json]
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/kernel_bench.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/ops/elementwise.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

using namespace nnr;

namespace {

struct Flags : bench::CommonFlags {
  int64_t channels = 256;
};

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (bench::parse_flag(i, argc, argv, "--n", v)) f.n = bench::parse_count(v, "--n");
    else if (bench::parse_flag(i, argc, argv, "--channels", v)) f.channels = bench::parse_count(v, "--channels");
    else if (bench::parse_flag(i, argc, argv, "--repeats", v)) f.repeats = std::stoi(v);
    else if (bench::parse_flag(i, argc, argv, "--warmups", v)) f.warmups = std::stoi(v);
    else if (std::string(argv[i]) == "--json") f.json = true;
    else throw std::runtime_error(std::string("unknown flag ") + argv[i]);
  }
  if (f.channels < 1 || f.n < f.channels) throw std::runtime_error("need --n >= --channels >= 1");
  bench::check_repeats(f);
  return f;
}

void check(int64_t channels, cudaStream_t stream) {
  Rng rng(5);
  const int64_t rows = 1000, n = rows * channels;
  std::vector<float> x(static_cast<size_t>(n));
  double s = 0.0, abs_sum = 0.0;
  for (auto& v : x) {
    v = static_cast<float>(rng.normal());
    s += v;
    abs_sum += std::fabs(v);
  }
  kernels::DeviceBuffer d_x(x.size() * sizeof(float)), d_db(static_cast<size_t>(channels) * sizeof(float)),
      d_out(sizeof(double)), ws(kernels::reduce_workspace_bytes(n));
  d_x.copy_from_host(x.data(), d_x.bytes(), stream);
  kernels::sum(d_x.as<float>(), n, d_out.as<double>(), ws.data(), stream);
  double got = 0.0;
  d_out.copy_to_host(&got, sizeof(double), stream);
  if (!(std::fabs(got - s) <= 1e-12 * abs_sum)) throw std::runtime_error("check failed: sum");
  kernels::bias_backward(d_x.as<float>(), d_db.as<float>(), rows, channels, 1, false, stream);
  Tensor db = Tensor::empty({channels});
  bias_backward(Tensor::from_vector({rows, channels}, x), db, false);
  std::vector<float> g(static_cast<size_t>(channels));
  d_db.copy_to_host(g.data(), g.size() * sizeof(float), stream);
  for (int64_t c = 0; c < channels; ++c)
    if (!(std::fabs(g[static_cast<size_t>(c)] - db[c]) <= 1e-6 * std::fabs(db[c]) + 1e-7 * rows))
      throw std::runtime_error("check failed: bias gradient channel " + std::to_string(c));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Flags f = parse(argc, argv);
    cudaStream_t stream;
    NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    check(f.channels, stream);
    bench::KernelTimer timer(stream);
    const int64_t rows = f.n / f.channels, n = rows * f.channels;
    kernels::DeviceBuffer d_x(static_cast<size_t>(n) * sizeof(float)), d_db(static_cast<size_t>(f.channels) * sizeof(float)),
        d_out(sizeof(double)), ws(kernels::reduce_workspace_bytes(n));
    NNR_CUDA_CHECK(cudaMemsetAsync(d_x.data(), 0, d_x.bytes(), stream));
    const double bytes = static_cast<double>(n) * 4.0;
    struct Row {
      const char* name;
      bench::Timing t;
    };
    const std::vector<Row> rows_out{
        {"sum", timer.time([&] { kernels::sum(d_x.as<float>(), n, d_out.as<double>(), ws.data(), stream); }, f.warmups, f.repeats)},
        {"l2_norm", timer.time([&] { kernels::l2_norm(d_x.as<float>(), n, d_out.as<double>(), ws.data(), stream); }, f.warmups, f.repeats)},
        {"bias_backward_rows", timer.time([&] { kernels::bias_backward(d_x.as<float>(), d_db.as<float>(), rows, f.channels, 1, false, stream); }, f.warmups, f.repeats)},
        {"bias_backward_planes", timer.time([&] { kernels::bias_backward(d_x.as<float>(), d_db.as<float>(), 1, f.channels, rows, false, stream); }, f.warmups, f.repeats)},
    };
    const double copy = timer.copy_bandwidth_gbs(static_cast<size_t>(bytes), f.warmups, f.repeats);
    const char* device = timer.device().name;
    for (const Row& r : rows_out) {
      const double g = bench::gbs(bytes, r.t.median_ms);
      if (f.json)
        std::printf("{\"benchmark\":\"%s\",\"device\":\"%s\",\"git\":\"%s\",\"n\":%lld,\"channels\":%lld,\"bytes\":%.0f,"
                    "\"repeats\":%d,\"median_ms\":%.6f,\"min_ms\":%.6f,\"gbs\":%.2f,\"copy_gbs\":%.2f,\"pct_copy\":%.2f}\n",
                    r.name, device, bench::git_hash().c_str(), static_cast<long long>(n),
                    static_cast<long long>(f.channels), bytes, r.t.repeats, r.t.median_ms, r.t.min_ms, g, copy,
                    100.0 * g / copy);
      else
        std::printf("%s n=%lld channels=%lld on %s: median %.4f ms (min %.4f), %.1f GB/s = %.1f%% of D2D copy %.1f GB/s\n",
                    r.name, static_cast<long long>(n), static_cast<long long>(f.channels), device, r.t.median_ms,
                    r.t.min_ms, g, 100.0 * g / copy, copy);
    }
    NNR_CUDA_CHECK(cudaStreamDestroy(stream));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
