// bench_conv2d: 2-D convolution forward, backward data and backward filter (kernels/conv2d.h)
// through the backend interface: the CPU reference (im2col + GEMM) always, cuDNN on a usable GPU
// after a check against the CPU. Shapes: the Fashion-MNIST CNN's two layers, a strided layer of
// odd size, one large feature map; or --batch --channels --size --filters --kernel.
//   bench_conv2d [--device cpu|cuda|all] [--repeats 50] [--warmups 10] [--json]
#include <vector>

#include "bench/kernel_bench.h"

using namespace nnr;

namespace {

void run(bench::BenchDevice& d, const kernels::ConvShape& s, const bench::CommonFlags& f) {
  const int64_t x_numel = s.n * s.c * s.h * s.w, w_numel = s.o * s.c * s.kh * s.kw;
  const int64_t y_numel = s.n * s.o * s.out_h() * s.out_w();
  const std::vector<float> x = bench::random_floats(static_cast<size_t>(x_numel), 1);
  const std::vector<float> w = bench::random_floats(static_cast<size_t>(w_numel), 2);
  const std::vector<float> bias = bench::random_floats(static_cast<size_t>(s.o), 3);
  const std::vector<float> dy = bench::random_floats(static_cast<size_t>(y_numel), 4);
  std::vector<float> y(static_cast<size_t>(y_numel)), dx(static_cast<size_t>(x_numel)),
      dw(static_cast<size_t>(w_numel), 0.0f);
  const float *d_x = d.copy(x), *d_w = d.copy(w), *d_bias = d.copy(bias), *d_dy = d.copy(dy);
  float *d_y = d.copy(y), *d_dx = d.copy(dx), *d_dw = d.copy(dw);
  Backend& b = d.backend();
  struct Op {
    const char* name;
    std::function<void()> run;
  };
  const std::vector<Op> ops{
      {"conv2d_forward", [&] { b.conv2d_forward(d_x, d_w, d_bias, s, d_y); }},
      {"conv2d_backward_data", [&] { b.conv2d_backward_data(d_dy, d_w, s, d_dx); }},
      {"conv2d_backward_filter", [&] { b.conv2d_backward_filter(d_x, d_dy, s, nullptr, s.o, d_dw); }},
  };
  for (const Op& op : ops) op.run();  // dw holds one pass: the check's
  double check = 0.0;
  if (d.is_cuda()) {
    Backend& cpu = cpu_backend();
    cpu.conv2d_forward(x.data(), w.data(), bias.data(), s, y.data());
    cpu.conv2d_backward_data(dy.data(), w.data(), s, dx.data());
    cpu.conv2d_backward_filter(x.data(), dy.data(), s, nullptr, s.o, dw.data());
    check = std::max({bench::checked_error(d.read(d_y, y.size()), y, 1e-4, "forward"),
                      bench::checked_error(d.read(d_dx, dx.size()), dx, 1e-4, "backward data"),
                      bench::checked_error(d.read(d_dw, dw.size()), dw, 1e-4, "backward filter")});
  }
  const double flops = 2.0 * static_cast<double>(y_numel) * static_cast<double>(s.c * s.kh * s.kw);
  for (const Op& op : ops) {
    nlohmann::ordered_json row = bench::row_of(op.name, d.name());
    row["shape"] = std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                   std::to_string(s.w) + " o" + std::to_string(s.o) + " k" + std::to_string(s.kh) + "x" +
                   std::to_string(s.kw) + " s" + std::to_string(s.stride) + " p" + std::to_string(s.padding);
    if (d.is_cuda()) row["check_error"] = check;
    const bench::Timing t = d.time(op.run, f);
    bench::add_timing(row, t);
    row["gflops"] = flops / (t.median_ms * 1e6);
    bench::print_row(f, row);
  }
}

kernels::ConvShape conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t stride, int64_t pad) {
  kernels::ConvShape s;
  s.n = n, s.c = c, s.h = h, s.w = w, s.o = o, s.kh = k, s.kw = k, s.stride = stride, s.padding = pad;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_conv2d: the convolution kernel family on the CPU and, where usable, the GPU"};
  bench::CommonFlags f;
  int64_t batch = 0, channels = 1, size = 28, filters = 8, kernel = 3;
  bench::add_common_flags(app, f);
  bench::add_device_flag(app, f);
  bench::add_count(app, "--batch", batch, "Samples (with it: one square shape from these flags, padding k/2)");
  bench::add_count(app, "--channels", channels, "Input channels");
  bench::add_count(app, "--size", size, "Input height and width");
  bench::add_count(app, "--filters", filters, "Output channels");
  bench::add_count(app, "--kernel", kernel, "Filter height and width");
  return bench::run_main(app, argc, argv, [&] {
    std::vector<kernels::ConvShape> shapes{conv(128, 1, 28, 28, 8, 5, 1, 2), conv(128, 8, 14, 14, 16, 3, 1, 1),
                                           conv(3, 3, 17, 13, 5, 3, 2, 1), conv(1, 1, 1, 1, 1, 1, 1, 0),
                                           conv(8, 64, 56, 56, 64, 3, 1, 1)};
    if (batch) {
      if (channels < 1 || filters < 1 || kernel < 1 || size < kernel)
        throw CLI::ValidationError("--batch", "needs --channels, --filters, --kernel >= 1 and --size >= --kernel");
      shapes = {conv(batch, channels, size, size, filters, kernel, 1, kernel / 2)};
    }
    bench::for_each_device(f, [&](bench::BenchDevice& d) {
      for (const auto& s : shapes) run(d, s, f);
    });
  });
}
