// Max-pool kernels against engine/ops/max_pool.h.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/core/tensor.h"
#include "engine/ops/max_pool.h"
#include "kernels/max_pool.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// Overlapping windows (stride < window) add several gradients into one input with atomicAdd in
// an arbitrary order: each sum of ≤ window² terms is within a few ulps of the CPU's sequential sum.
constexpr double kOverlapRel = 1e-6;

struct PoolCase {
  int64_t channels, height, width, window, stride;
};

}  // namespace

TEST_CASE("max-pool kernels match the CPU: argmax and output exactly, gradients scattered to the same inputs",
          "[cuda][max_pool]") {
  test::Stream stream;
  Rng rng(41);
  const std::vector<PoolCase> cases{{3, 8, 8, 2, 2}, {5, 7, 9, 2, 2}, {3, 7, 9, 3, 2}, {1, 9, 7, 3, 3}, {3, 5, 5, 5, 1}};
  for (const int64_t rows : test::awkward_rows())
    for (const PoolCase& pc : cases) {
      const Shape in_shape{rows, pc.channels, pc.height, pc.width};
      INFO("input " << shape_to_string(in_shape) << ", window " << pc.window << ", stride " << pc.stride);
      auto x = test::random_normal(static_cast<size_t>(shape_numel(in_shape)), rng);
      for (auto& v : x) v = std::round(v * 2.0f) / 2.0f;  // many ties: the first maximum must win on both
      const Shape out_shape = max_pool2d_output_shape(in_shape, pc.window, pc.stride);
      Tensor y = Tensor::empty(out_shape);
      std::vector<int64_t> argmax;
      max_pool2d_forward(Tensor::from_vector(in_shape, x), pc.window, pc.stride, y, argmax);

      kernels::PoolShape ps;
      ps.planes = rows * pc.channels;
      ps.height = pc.height;
      ps.width = pc.width;
      ps.window = pc.window;
      ps.stride = pc.stride;
      REQUIRE(ps.out_numel() == shape_numel(out_shape));
      const size_t out_n = static_cast<size_t>(ps.out_numel());
      DeviceArray<float> d_x(x, stream), d_y(out_n, stream);
      DeviceArray<int64_t> d_argmax(out_n, stream);
      kernels::max_pool2d_forward(d_x.get(), ps, d_y.get(), d_argmax.get(), stream);
      test::require_bit_identical(d_y.download(), y.to_vector(), "pooled values");
      REQUIRE(d_argmax.download() == argmax);

      const auto dy = test::random_normal(out_n, rng);
      Tensor dx = Tensor::empty(in_shape);
      max_pool2d_backward(Tensor::from_vector(out_shape, dy), argmax, pc.window, pc.stride, dx);
      DeviceArray<float> d_dy(dy, stream), d_dx(x.size(), stream);
      kernels::max_pool2d_backward(d_dy.get(), d_argmax.get(), ps, d_dx.get(), stream);
      if (pc.stride >= pc.window) {
        test::require_bit_identical(d_dx.download(), dx.to_vector(), "input gradient (disjoint windows)");
      } else {
        std::vector<double> magnitude(x.size(), 0.0);  // Σ|dy| landing on each input
        for (size_t i = 0; i < out_n; ++i) magnitude[static_cast<size_t>(argmax[i])] += std::fabs(dy[i]);
        test::require_close(d_dx.download(), dx.to_vector(), kOverlapRel, 0.0, "input gradient (overlapping)",
                            magnitude);
      }
      // Below a ReLU (relu_y = the pooled values): the gradients of outputs whose value is not > 0
      // are dropped, on both devices; a disjoint-window case is exact, the others as above.
      Tensor relu_dx = Tensor::empty(in_shape);
      max_pool2d_backward(Tensor::from_vector(out_shape, dy), argmax, pc.window, pc.stride, relu_dx, &y);
      kernels::max_pool2d_backward(d_dy.get(), d_argmax.get(), ps, d_dx.get(), stream, d_y.get());
      if (pc.stride >= pc.window) {
        test::require_bit_identical(d_dx.download(), relu_dx.to_vector(), "ReLU input gradient (disjoint windows)");
      } else {
        std::vector<double> magnitude(x.size(), 0.0);
        for (size_t i = 0; i < out_n; ++i) magnitude[static_cast<size_t>(argmax[i])] += std::fabs(dy[i]);
        test::require_close(d_dx.download(), relu_dx.to_vector(), kOverlapRel, 0.0, "ReLU input gradient (overlapping)",
                            magnitude);
      }
    }
}
