// Reduction kernels: bias gradients against engine bias_backward; sums and norms against plain
// double loops.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/core/tensor.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/gather.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// Both sides sum in double and round to float once: at most 1 float ulp apart (≤ 1.2e-7), unless
// the sum cancels to near zero, where the double sums' own error (≤ n·2^-53·Σ|x| ≈ 4e-12·Σ|x| for
// n ≤ 37000) decides the rounding: hence 1e-6 relative plus 1e-10 of the channel's Σ|x|.
constexpr double kBiasGradRel = 1e-6, kBiasGradAbsPerAbsSum = 1e-10;
// Whole-array sums are doubles summed in another order: 1e-12 relative to Σ|x| (n ≤ 1e6).
constexpr double kSumRelToAbsSum = 1e-12;

}  // namespace

TEST_CASE("bias gradient kernel matches the CPU bias_backward, overwriting and accumulating", "[cuda][reduce]") {
  test::Stream stream;
  Rng rng(31);
  for (const int64_t rows : test::awkward_rows())
    for (const Shape& shape : std::vector<Shape>{{rows, 7}, {rows, 1}, {rows, 45}, {rows, 3, 5, 3}, {rows, 17, 2, 1}})
      for (const bool accumulate : {false, true}) {
        INFO("shape " << shape_to_string(shape) << (accumulate ? ", accumulate" : ", overwrite"));
        const int64_t numel = shape_numel(shape), channels = shape[1], inner = numel / (rows * channels);
        const auto dy = test::random_normal(static_cast<size_t>(numel), rng);
        const auto db0 = test::random_normal(static_cast<size_t>(channels), rng);
        Tensor db = Tensor::from_vector({channels}, db0);
        bias_backward(Tensor::from_vector(shape, dy), db, accumulate);
        auto abs_dy = dy;
        for (auto& v : abs_dy) v = std::fabs(v);
        Tensor abs_sum = Tensor::empty({channels});
        bias_backward(Tensor::from_vector(shape, abs_dy), abs_sum, false);
        std::vector<double> magnitude(static_cast<size_t>(channels));
        for (int64_t c = 0; c < channels; ++c)
          magnitude[static_cast<size_t>(c)] = kBiasGradAbsPerAbsSum / kBiasGradRel * (abs_sum[c] + std::fabs(db0[static_cast<size_t>(c)]));

        DeviceArray<float> d_dy(dy, stream), d_db(static_cast<size_t>(channels), stream);
        if (accumulate) d_db.upload(db0);  // else it stays poisoned: the kernel must overwrite it
        kernels::bias_backward(d_dy.get(), d_db.get(), rows, channels, inner, accumulate, stream);
        test::require_close(d_db.download(), db.to_vector(), kBiasGradRel, 0.0, "bias gradient", magnitude);
      }
}

TEST_CASE("bias gradient kernel of selected channels matches the CPU bias_backward_rows", "[cuda][reduce]") {
  test::Stream stream;
  Rng rng(32);
  for (const int64_t rows : test::awkward_rows())
    for (const Shape& shape : std::vector<Shape>{{rows, 7}, {rows, 45}, {rows, 3, 5, 3}, {rows, 17, 2, 1}}) {
      INFO("shape " << shape_to_string(shape));
      const int64_t numel = shape_numel(shape), channels = shape[1], inner = numel / (rows * channels);
      std::vector<int64_t> open;
      for (int64_t c = 0; c < channels; ++c)
        if (rng.uniform() < 0.5 || c == channels - 1) open.push_back(c);
      const auto dy = test::random_normal(static_cast<size_t>(numel), rng);
      const auto db0 = test::random_normal(static_cast<size_t>(channels), rng);
      Tensor db = Tensor::from_vector({channels}, db0);
      RowIndex index;
      bias_backward_rows(Tensor::from_vector(shape, dy), open, index, db);
      auto abs_dy = dy;
      for (auto& v : abs_dy) v = std::fabs(v);
      Tensor abs_sum = Tensor::empty({channels});
      bias_backward(Tensor::from_vector(shape, abs_dy), abs_sum, false);
      std::vector<double> magnitude(static_cast<size_t>(channels));
      for (int64_t c = 0; c < channels; ++c)
        magnitude[static_cast<size_t>(c)] = kBiasGradAbsPerAbsSum / kBiasGradRel * (abs_sum[c] + std::fabs(db0[static_cast<size_t>(c)]));

      DeviceArray<float> d_dy(dy, stream), d_db(db0, stream);
      DeviceArray<int64_t> d_open(open, stream);
      kernels::bias_backward_rows(d_dy.get(), d_db.get(), rows, channels, inner, d_open.get(),
                                  static_cast<int64_t>(open.size()), stream);
      // Closed channels keep db0 exactly (require_close with the CPU, which leaves them alone too).
      test::require_close(d_db.download(), db.to_vector(), kBiasGradRel, 0.0, "bias gradient of rows", magnitude);
    }
}

TEST_CASE("sum, sum of squares and L2 norm kernels match double loops", "[cuda][reduce]") {
  test::Stream stream;
  Rng rng(32);
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{31}, int64_t{257}, int64_t{1000}, int64_t{37000},
                          int64_t{1000003}}) {
    INFO("n = " << n);
    const auto x = test::random_normal(static_cast<size_t>(n), rng);
    double s = 0.0, sq = 0.0, abs_sum = 0.0;
    for (const float v : x) {
      s += v;
      sq += static_cast<double>(v) * v;
      abs_sum += std::fabs(v);
    }
    DeviceArray<float> d_x(x.empty() ? std::vector<float>{0.0f} : x, stream);
    kernels::DeviceBuffer workspace(kernels::reduce_workspace_bytes(n));
    DeviceArray<double> out(3, stream);
    kernels::sum(d_x.get(), n, out.get(), workspace.data(), stream);
    kernels::sum_squares(d_x.get(), n, out.get() + 1, workspace.data(), stream);
    kernels::l2_norm(d_x.get(), n, out.get() + 2, workspace.data(), stream);
    const auto got = out.download();
    REQUIRE(std::fabs(got[0] - s) <= kSumRelToAbsSum * abs_sum);
    REQUIRE(std::fabs(got[1] - sq) <= kSumRelToAbsSum * sq);
    REQUIRE(std::fabs(got[2] - std::sqrt(sq)) <= kSumRelToAbsSum * std::sqrt(sq));
    // Deterministic: the same input gives the same bits.
    DeviceArray<double> again(1, stream);
    kernels::sum(d_x.get(), n, again.get(), workspace.data(), stream);
    REQUIRE(again.download()[0] == got[0]);
  }
}
