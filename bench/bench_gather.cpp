// bench_gather: gathering channels and scatter-adding rows (kernels/gather.h) through the backend
// interface: the CPU reference always, the CUDA kernels on a usable GPU after a check against the
// CPU. Cases: a minibatch of rows gathered from a Fashion-MNIST-sized table (and its gradient
// scattered back), a conv layer's channels, an odd small case. Bytes: each moved float read and
// written once, plus the indices.
//   bench_gather [--device cpu|cuda|all] [--repeats 50] [--warmups 10] [--json]
#include <vector>

#include "bench/kernel_bench.h"

using namespace nnr;

namespace {

struct Case {
  int64_t outer, channels, inner, count;
};

std::vector<int64_t> random_rows(int64_t count, int64_t channels, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> rows(static_cast<size_t>(count));
  for (auto& r : rows) r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(channels)));
  return rows;
}

void run(bench::BenchDevice& d, const Case& c, const bench::CommonFlags& f) {
  const std::vector<float> src = bench::random_floats(static_cast<size_t>(c.outer * c.channels * c.inner), 1);
  const std::vector<int64_t> rows = random_rows(c.count, c.channels, 2);
  const size_t picked = static_cast<size_t>(c.outer * c.count * c.inner);
  const std::vector<float> grad = bench::random_floats(static_cast<size_t>(c.count * c.inner), 3);
  std::vector<float> dst(picked), table(static_cast<size_t>(c.channels * c.inner), 0.0f);
  const float *d_src = d.copy(src), *d_grad = d.copy(grad);
  const int64_t* d_rows = d.copy(rows);
  float *d_dst = d.copy(dst), *d_table = d.copy(table);
  Backend& b = d.backend();
  const auto gather = [&] { b.gather_channels(d_src, c.outer, c.channels, c.inner, d_rows, c.count, d_dst); };
  const auto scatter = [&] { b.scatter_add_rows(d_grad, c.count, c.inner, d_rows, d_table); };
  gather();
  scatter();
  double check = 0.0;
  if (d.is_cuda()) {
    cpu_backend().gather_channels(src.data(), c.outer, c.channels, c.inner, rows.data(), c.count, dst.data());
    cpu_backend().scatter_add_rows(grad.data(), c.count, c.inner, rows.data(), table.data());
    check = std::max(bench::checked_error(d.read(d_dst, picked), dst, 0.0, "gather"),
                     bench::checked_error(d.read(d_table, table.size()), table, 1e-5, "scatter add"));
  }
  const std::string shape = std::to_string(c.outer) + "x" + std::to_string(c.channels) + "x" +
                            std::to_string(c.inner) + " pick " + std::to_string(c.count);
  const double index_bytes = static_cast<double>(c.count) * 8.0;
  bench::measure(d, f, "gather_channels", shape, 2.0 * static_cast<double>(picked) * 4.0 + index_bytes, gather, check);
  bench::measure(d, f, "scatter_add_rows", shape, 3.0 * static_cast<double>(c.count * c.inner) * 4.0 + index_bytes,
                 scatter, check);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gather: the gather / scatter kernel family on the CPU and, where usable, the GPU"};
  bench::CommonFlags f;
  bench::add_common_flags(app, f);
  bench::add_device_flag(app, f);
  return bench::run_main(app, argc, argv, [&] {
    const std::vector<Case> cases{{1, 60000, 784, 128}, {1, 60000, 784, 4096}, {64, 32, 196, 24}, {3, 257, 31, 100},
                                  {1, 1, 1, 1}};
    bench::for_each_device(f, [&](bench::BenchDevice& d) {
      for (const Case& c : cases) run(d, c, f);
    });
  });
}
