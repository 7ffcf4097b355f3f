// bench_elementwise: ReLU, dropout, bias add and bias gradient (kernels/elementwise.h) through the
// backend interface: the CPU reference always, the CUDA kernels on a usable GPU after a check
// against the CPU (dropout, whose draws differ by device, is checked for y = x · mask instead).
// Sizes: 1, 31, 257 and 1000003 elements and --n; bias shapes of a linear layer, a conv layer's
// planes and an odd one. Bytes by hand: each reads its inputs and writes its outputs once.
//   bench_elementwise [--n 10M] [--device cpu|cuda|all] [--repeats 50] [--warmups 10] [--json]
#include <vector>

#include "bench/kernel_bench.h"

using namespace nnr;

namespace {

void run_pointwise(bench::BenchDevice& d, int64_t n, const bench::CommonFlags& f) {
  const size_t count = static_cast<size_t>(n);
  const std::vector<float> x = bench::random_floats(count, 1), dy = bench::random_floats(count, 2);
  std::vector<float> y(count), dx(count), mask(count);
  const float *d_x = d.copy(x), *d_dy = d.copy(dy);
  float *d_y = d.copy(y), *d_dx = d.copy(dx), *d_mask = d.copy(mask);
  Backend& b = d.backend();
  Rng rng(7);
  double relu = 0.0, dropout = 0.0;
  b.relu_forward(d_x, d_y, n);
  b.relu_backward(d_y, d_dy, d_dx, n);
  if (d.is_cuda()) {
    cpu_backend().relu_forward(x.data(), y.data(), n);
    cpu_backend().relu_backward(y.data(), dy.data(), dx.data(), n);
    relu = std::max(bench::checked_error(d.read(d_y, count), y, 0.0, "relu forward"),
                    bench::checked_error(d.read(d_dx, count), dx, 0.0, "relu backward"));
    b.dropout_forward(d_x, 0.5f, rng, d_y, d_mask, n);
    b.dropout_backward(d_mask, d_dy, d_dx, n);
    const std::vector<float> got_mask = d.read(d_mask, count);
    for (size_t i = 0; i < count; ++i) {
      y[i] = x[i] * got_mask[i];
      dx[i] = dy[i] * got_mask[i];
    }
    dropout = std::max(bench::checked_error(d.read(d_y, count), y, 1e-6, "dropout forward"),
                       bench::checked_error(d.read(d_dx, count), dx, 1e-6, "dropout backward"));
  }
  const std::string shape = std::to_string(n);
  const double floats = static_cast<double>(n) * 4.0;
  bench::measure(d, f, "relu_forward", shape, 2 * floats, [&] { b.relu_forward(d_x, d_y, n); }, relu);
  bench::measure(d, f, "relu_backward", shape, 3 * floats, [&] { b.relu_backward(d_y, d_dy, d_dx, n); }, relu);
  bench::measure(d, f, "dropout_forward", shape, 3 * floats, [&] { b.dropout_forward(d_x, 0.5f, rng, d_y, d_mask, n); },
        dropout);
  bench::measure(d, f, "dropout_backward", shape, 3 * floats, [&] { b.dropout_backward(d_mask, d_dy, d_dx, n); }, dropout);
}

void run_bias(bench::BenchDevice& d, int64_t outer, int64_t channels, int64_t inner, const bench::CommonFlags& f) {
  const size_t count = static_cast<size_t>(outer * channels * inner);
  const std::vector<float> y0 = bench::random_floats(count, 3), bias = bench::random_floats(static_cast<size_t>(channels), 4);
  std::vector<float> y = y0, db(static_cast<size_t>(channels));
  float* d_y = d.copy(y0);
  const float* d_bias = d.copy(bias);
  float* d_db = d.copy(db);
  Backend& b = d.backend();
  b.add_bias(d_y, d_bias, outer, channels, inner);
  b.bias_backward(d_y, d_db, outer, channels, inner, false);
  double check = 0.0;
  if (d.is_cuda()) {
    cpu_backend().add_bias(y.data(), bias.data(), outer, channels, inner);
    cpu_backend().bias_backward(y.data(), db.data(), outer, channels, inner, false);
    check = std::max(bench::checked_error(d.read(d_y, count), y, 1e-6, "add bias"),
                     bench::checked_error(d.read(d_db, db.size()), db, 1e-5, "bias gradient"));
  }
  const std::string shape = std::to_string(outer) + "x" + std::to_string(channels) + "x" + std::to_string(inner);
  const double floats = static_cast<double>(count) * 4.0;
  bench::measure(d, f, "add_bias", shape, 2 * floats, [&] { b.add_bias(d_y, d_bias, outer, channels, inner); }, check);
  bench::measure(d, f, "bias_backward", shape, floats, [&] { b.bias_backward(d_y, d_db, outer, channels, inner, false); }, check);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_elementwise: the elementwise kernel family on the CPU and, where usable, the GPU"};
  bench::CommonFlags f;
  bench::add_common_flags(app, f, "Elements of the largest pointwise case");
  bench::add_device_flag(app, f);
  return bench::run_main(app, argc, argv, [&] {
    if (f.n < 1) throw CLI::ValidationError("--n", "must be >= 1");
    bench::for_each_device(f, [&](bench::BenchDevice& d) {
      for (const int64_t n : {int64_t{1}, int64_t{31}, int64_t{257}, int64_t{1000003}, f.n}) run_pointwise(d, n, f);
      run_bias(d, 128, 256, 1, f);
      run_bias(d, 128, 16, 196, f);
      run_bias(d, 3, 7, 1031, f);
    });
  });
}
