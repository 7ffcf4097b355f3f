// Bias add, ReLU and dropout kernels against engine/ops/elementwise.h.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/core/tensor.h"
#include "engine/ops/elementwise.h"
#include "kernels/elementwise.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

Tensor tensor_of(const Shape& shape, const std::vector<float>& values) { return Tensor::from_vector(shape, values); }

std::vector<Shape> bias_shapes(int64_t rows) {
  // A Linear's [N, C] and a Conv's [N, C, H, W], odd channel counts.
  return {{rows, 7}, {rows, 1}, {rows, 3, 5, 3}, {rows, 17, 2, 1}};
}

}  // namespace

// Each output element is one IEEE add, compare or multiply of the same operands as on the CPU:
// the results must be bit-identical, not merely close.
TEST_CASE("add_bias kernel is bit-identical to the CPU add_bias", "[cuda][elementwise]") {
  test::Stream stream;
  Rng rng(11);
  for (const int64_t rows : test::awkward_rows())
    for (const Shape& shape : bias_shapes(rows)) {
      INFO("shape " << shape_to_string(shape));
      const int64_t numel = shape_numel(shape), channels = shape[1], inner = numel / (rows * channels);
      const auto y0 = test::random_normal(static_cast<size_t>(numel), rng);
      const auto b = test::random_normal(static_cast<size_t>(channels), rng);
      Tensor y = tensor_of(shape, y0);
      add_bias(y, tensor_of({channels}, b));
      DeviceArray<float> dy(y0, stream), db(b, stream);
      kernels::add_bias(dy.get(), db.get(), rows, channels, inner, stream);
      test::require_bit_identical(dy.download(), y.to_vector(), "add_bias");
    }
}

TEST_CASE("ReLU forward and backward kernels are bit-identical to the CPU", "[cuda][elementwise]") {
  test::Stream stream;
  Rng rng(12);
  for (const int64_t rows : test::awkward_rows()) {
    const Shape shape{rows, 37};
    const size_t n = static_cast<size_t>(rows * 37);
    auto x = test::random_normal(n, rng);
    x[0] = 0.0f;  // the boundary: relu(0) = 0 and no gradient passes
    const auto g = test::random_normal(n, rng);
    Tensor y = Tensor::empty(shape), dx = Tensor::empty(shape);
    relu_forward(tensor_of(shape, x), y);
    relu_backward(y, tensor_of(shape, g), dx);

    DeviceArray<float> d_x(x, stream), d_y(n, stream), d_g(g, stream), d_dx(n, stream);
    kernels::relu_forward(d_x.get(), d_y.get(), static_cast<int64_t>(n), stream);
    test::require_bit_identical(d_y.download(), y.to_vector(), "relu forward");
    kernels::relu_backward(d_y.get(), d_g.get(), d_dx.get(), static_cast<int64_t>(n), stream);
    test::require_bit_identical(d_dx.download(), dx.to_vector(), "relu backward");
    // In place, as layers may run it.
    kernels::relu_forward(d_x.get(), d_x.get(), static_cast<int64_t>(n), stream);
    test::require_bit_identical(d_x.download(), y.to_vector(), "relu forward in place");
  }
}

TEST_CASE("dropout kernel keeps each element by its documented draw and scales by 1 / (1 - rate)",
          "[cuda][elementwise]") {
  test::Stream stream;
  Rng rng(13);
  const float rate = 0.3f;
  const float scale = 1.0f / (1.0f - rate);  // as dropout_forward on the CPU computes it
  for (const int64_t rows : test::awkward_rows()) {
    const int64_t n = rows * 37;
    const size_t un = static_cast<size_t>(n);
    const auto x = test::random_normal(un, rng);
    DeviceArray<float> d_x(x, stream), d_y(un, stream), d_mask(un, stream);
    const uint64_t seed = 99 + static_cast<uint64_t>(rows);
    kernels::dropout_forward(d_x.get(), rate, seed, d_y.get(), d_mask.get(), n, stream);
    const auto y = d_y.download(), mask = d_mask.download();
    int64_t dropped = 0;
    for (size_t i = 0; i < un; ++i) {
      const bool drop = kernels::dropout_uniform(seed, static_cast<int64_t>(i)) < static_cast<double>(rate);
      INFO("element " << i);
      REQUIRE(test::same_bits(mask[i], drop ? 0.0f : scale));
      REQUIRE(test::same_bits(y[i], x[i] * mask[i]));
      dropped += drop;
    }
    // The draw itself is uniform: the dropped fraction lies within 5 standard deviations of rate.
    const double sd = std::sqrt(rate * (1.0 - rate) / static_cast<double>(n));
    REQUIRE(std::fabs(static_cast<double>(dropped) / static_cast<double>(n) - rate) <= 5.0 * sd + 0.5 / n);

    // Same seed, same mask; the backward is the CPU's dx = dy · mask, bit for bit.
    DeviceArray<float> d_mask2(un, stream), d_y2(un, stream);
    kernels::dropout_forward(d_x.get(), rate, seed, d_y2.get(), d_mask2.get(), n, stream);
    test::require_bit_identical(d_mask2.download(), mask, "dropout mask for the same seed");
    const auto g = test::random_normal(un, rng);
    Tensor dx = Tensor::empty({rows, 37});
    dropout_backward(tensor_of({rows, 37}, mask), tensor_of({rows, 37}, g), dx);
    DeviceArray<float> d_g(g, stream), d_dx(un, stream);
    kernels::dropout_backward(d_mask.get(), d_g.get(), d_dx.get(), n, stream);
    test::require_bit_identical(d_dx.download(), dx.to_vector(), "dropout backward");
  }
  // A different seed gives a different mask.
  const int64_t n = 4096;
  DeviceArray<float> x(std::vector<float>(n, 1.0f), stream), y(n, stream), m1(n, stream), m2(n, stream);
  kernels::dropout_forward(x.get(), rate, 1, y.get(), m1.get(), n, stream);
  kernels::dropout_forward(x.get(), rate, 2, y.get(), m2.get(), n, stream);
  REQUIRE(m1.download() != m2.download());
  REQUIRE_THROWS_AS(kernels::dropout_forward(x.get(), 1.0f, 1, y.get(), m1.get(), n, stream), InvalidArgument);
}
