// bench_max_pool: 2-D max pooling forward and backward (kernels/max_pool.h) through the backend
// interface: the CPU reference always, the CUDA kernels on a usable GPU after a check against the
// CPU (values and argmax exactly). Shapes: the Fashion-MNIST CNN's two pools, an odd plane with an
// overlapping 3/2 window, one large plane. Bytes: forward reads x and writes y and argmax; backward
// writes dx and reads dy and argmax.
//   bench_max_pool [--device cpu|cuda|all] [--repeats 50] [--warmups 10] [--json]
#include <vector>

#include "bench/kernel_bench.h"

using namespace nnr;

namespace {

void run(bench::BenchDevice& d, const kernels::PoolShape& s, const bench::CommonFlags& f) {
  const size_t in = static_cast<size_t>(s.planes * s.height * s.width), out = static_cast<size_t>(s.out_numel());
  const std::vector<float> x = bench::random_floats(in, 1), dy = bench::random_floats(out, 2);
  std::vector<float> y(out), dx(in);
  std::vector<int64_t> argmax(out);
  const float *d_x = d.copy(x), *d_dy = d.copy(dy);
  float *d_y = d.copy(y), *d_dx = d.copy(dx);
  int64_t* d_argmax = d.copy(argmax);
  Backend& b = d.backend();
  const auto forward = [&] { b.max_pool2d_forward(d_x, s, d_y, d_argmax); };
  const auto backward = [&] { b.max_pool2d_backward(d_dy, d_argmax, s, d_dx, nullptr); };
  forward();
  backward();
  double check = 0.0;
  if (d.is_cuda()) {
    cpu_backend().max_pool2d_forward(x.data(), s, y.data(), argmax.data());
    cpu_backend().max_pool2d_backward(dy.data(), argmax.data(), s, dx.data(), nullptr);
    if (d.read(d_argmax, out) != argmax) throw std::runtime_error("check failed: max pool argmax");
    check = std::max(bench::checked_error(d.read(d_y, out), y, 0.0, "max pool forward"),
                     bench::checked_error(d.read(d_dx, in), dx, 1e-6, "max pool backward"));
  }
  const std::string shape = std::to_string(s.planes) + "x" + std::to_string(s.height) + "x" + std::to_string(s.width) +
                            " window " + std::to_string(s.window) + " stride " + std::to_string(s.stride);
  const double bytes = static_cast<double>(in) * 4.0 + static_cast<double>(out) * 12.0;
  bench::measure(d, f, "max_pool2d_forward", shape, bytes, forward, check);
  bench::measure(d, f, "max_pool2d_backward", shape, bytes, backward, check);
}

kernels::PoolShape pool(int64_t planes, int64_t height, int64_t width, int64_t window, int64_t stride) {
  kernels::PoolShape s;
  s.planes = planes, s.height = height, s.width = width, s.window = window, s.stride = stride;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_max_pool: the max-pool kernel family on the CPU and, where usable, the GPU"};
  bench::CommonFlags f;
  bench::add_common_flags(app, f);
  bench::add_device_flag(app, f);
  return bench::run_main(app, argc, argv, [&] {
    const std::vector<kernels::PoolShape> shapes{pool(128 * 8, 28, 28, 2, 2), pool(128 * 16, 14, 14, 2, 2),
                                                 pool(15, 17, 13, 3, 2), pool(1, 2, 2, 2, 2), pool(4, 1023, 1023, 2, 2)};
    bench::for_each_device(f, [&](bench::BenchDevice& d) {
      for (const auto& s : shapes) run(d, s, f);
    });
  });
}
