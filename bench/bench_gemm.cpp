// bench_gemm: C = alpha op(A) op(B) + beta C (kernels/gemm.h) through the backend interface: the CPU
// reference (gemm_cpu) always, cuBLAS on a usable GPU after a check against the CPU. Shapes: a
// single row, sizes just past a tile, a skinny and a transposed product, a large square; or --m --n --k.
//   bench_gemm [--m M --n N --k K] [--device cpu|cuda|all] [--repeats 50] [--warmups 10] [--json]
#include <vector>

#include "bench/kernel_bench.h"

using namespace nnr;

namespace {

struct GemmShape {
  int64_t m, n, k;
  bool transpose_a = false, transpose_b = false;
};

void run(bench::BenchDevice& d, const GemmShape& s, const bench::CommonFlags& f) {
  const std::vector<float> a = bench::random_floats(static_cast<size_t>(s.m * s.k), 1);
  const std::vector<float> b = bench::random_floats(static_cast<size_t>(s.k * s.n), 2);
  std::vector<float> c(static_cast<size_t>(s.m * s.n), 0.0f);
  const float* da = d.copy(a);
  const float* db = d.copy(b);
  float* dc = d.copy(c);
  const auto op = [&] { d.backend().gemm(da, s.transpose_a, db, s.transpose_b, dc, s.m, s.n, s.k, 1.0f, 0.0f); };
  op();
  nlohmann::ordered_json row = bench::row_of("gemm", d.name());
  row["m"] = s.m;
  row["n"] = s.n;
  row["k"] = s.k;
  row["transpose_a"] = s.transpose_a;
  row["transpose_b"] = s.transpose_b;
  if (d.is_cuda()) {
    cpu_backend().gemm(a.data(), s.transpose_a, b.data(), s.transpose_b, c.data(), s.m, s.n, s.k, 1.0f, 0.0f);
    row["check_error"] = bench::checked_error(d.read(dc, c.size()), c, 1e-4, "gemm");
  }
  const bench::Timing t = d.time(op, f);
  bench::add_timing(row, t);
  row["gflops"] = 2.0 * static_cast<double>(s.m * s.n * s.k) / (t.median_ms * 1e6);
  bench::print_row(f, row);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gemm: the GEMM kernel family on the CPU and, where usable, the GPU"};
  bench::CommonFlags f;
  GemmShape one{0, 0, 0};
  bench::add_common_flags(app, f);
  bench::add_device_flag(app, f);
  bench::add_count(app, "--m", one.m, "Rows of C (with --n and --k: this shape only)");
  bench::add_count(app, "--n", one.n, "Columns of C");
  bench::add_count(app, "--k", one.k, "Inner dimension");
  return bench::run_main(app, argc, argv, [&] {
    std::vector<GemmShape> shapes{{1, 256, 784},         {128, 256, 784},        {257, 129, 65},
                                  {31, 4097, 33},        {128, 784, 256, true, false},
                                  {256, 784, 128, false, true}, {1024, 1024, 1024}};
    if (one.m || one.n || one.k) {
      if (one.m < 1 || one.n < 1 || one.k < 1) throw CLI::ValidationError("--m --n --k", "all three must be >= 1");
      shapes = {one};
    }
    bench::for_each_device(f, [&](bench::BenchDevice& d) {
      for (const GemmShape& s : shapes) run(d, s, f);
    });
  });
}
