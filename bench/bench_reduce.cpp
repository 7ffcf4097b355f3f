// bench_reduce: whole-array sum / L2 norm and the per-channel bias gradient (kernels/reduce.h).
// Checks against double loops / the CPU bias_backward first, then times each: >= 10 warmups,
// >= 50 repeats with CUDA events after an L2 flush. Bytes by hand: each reads its input once.
//   bench_reduce --n 10M [--channels 256] [--repeats 50] [--warmups 10] [--json]
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
  CLI::App app{"bench_reduce: whole-array sum and L2 norm, and the per-channel bias gradient, on the GPU"};
  Flags f;
  bench::add_common_flags(app, f, "Elements");
  bench::add_count(app, "--channels", f.channels, "Channels of the bias gradient");
  return bench::run_main(app, argc, argv, [&] {
    if (f.channels < 1 || f.n < f.channels) throw CLI::ValidationError("--n", "need --n >= --channels >= 1");
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
    for (const Row& r : rows_out) {
      nlohmann::ordered_json row = bench::row_of(r.name, timer.device().name);
      row["n"] = n;
      row["channels"] = f.channels;
      bench::add_bandwidth(row, bytes, r.t, copy);
      bench::print_row(f, row);
    }
    NNR_CUDA_CHECK(cudaStreamDestroy(stream));
  });
}
