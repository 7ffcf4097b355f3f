// Row gather and scatter-add kernels against engine/ops/gather.h on the CPU.
#include <catch2/catch.hpp>

#include <algorithm>

#include "engine/core/tensor.h"
#include "engine/ops/gather.h"
#include "kernels/gather.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// `count` distinct sorted indices out of [0, total), as an UpdateMask holds them.
std::vector<int64_t> random_rows(int64_t total, int64_t count, Rng& rng) {
  std::vector<int64_t> all(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) all[static_cast<size_t>(i)] = i;
  for (int64_t i = 0; i < count; ++i)
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(total - i))))]);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

// Pure copies and one IEEE add per element of the same operands: bit-identical to the CPU.
TEST_CASE("gather_channels, scatter_add_rows and scatter_channels kernels are bit-identical to the CPU",
          "[cuda][gather]") {
  test::Stream stream;
  Rng rng(21);
  for (const int64_t outer : test::awkward_rows())
    for (const auto& [channels, inner] : std::vector<std::pair<int64_t, int64_t>>{{7, 1}, {33, 1}, {13, 25}, {5, 3}})
      for (const int64_t open : {int64_t{1}, channels / 2 + 1, channels}) {
        INFO("outer " << outer << " channels " << channels << " inner " << inner << " open " << open);
        const std::vector<int64_t> rows = random_rows(channels, open, rng);
        const Shape src_shape{outer, channels, inner}, dst_shape{outer, open, inner};
        const auto src = test::random_normal(static_cast<size_t>(shape_numel(src_shape)), rng);
        Tensor want = Tensor::empty(dst_shape);
        gather_channels(Tensor::from_vector(src_shape, src), rows.data(), open, want);

        DeviceArray<float> d_src(src, stream), d_dst(static_cast<size_t>(shape_numel(dst_shape)), stream);
        DeviceArray<int64_t> d_rows(rows, stream);
        kernels::gather_channels(d_src.get(), outer, channels, inner, d_rows.get(), open, d_dst.get(), stream);
        test::require_bit_identical(d_dst.download(), want.to_vector(), "gather_channels");

        // Scatter the compact [open, outer·inner] rows back into a [channels, outer·inner] gradient.
        const int64_t row_length = outer * inner;
        const auto base = test::random_normal(static_cast<size_t>(channels * row_length), rng);
        const auto compact = test::random_normal(static_cast<size_t>(open * row_length), rng);
        Tensor grad = Tensor::from_vector({channels, row_length}, base);
        scatter_add_rows(Tensor::from_vector({open, row_length}, compact), rows.data(), grad);
        DeviceArray<float> d_grad(base, stream), d_compact(compact, stream);
        kernels::scatter_add_rows(d_compact.get(), open, row_length, d_rows.get(), d_grad.get(), stream);
        const std::vector<float> got = d_grad.download();
        test::require_bit_identical(got, grad.to_vector(), "scatter_add_rows");

        // Put the gathered channels back into a [outer, channels, inner] tensor of other values.
        const auto canvas = test::random_normal(static_cast<size_t>(shape_numel(src_shape)), rng);
        Tensor placed = Tensor::from_vector(src_shape, canvas);
        scatter_channels(want, rows.data(), placed);
        DeviceArray<float> d_placed(canvas, stream);
        kernels::scatter_channels(d_dst.get(), outer, open, inner, d_rows.get(), channels, d_placed.get(), stream);
        test::require_bit_identical(d_placed.download(), placed.to_vector(), "scatter_channels");
        // Rows not selected keep their bits (the CPU reference leaves them alone too).
        for (int64_t c = 0, r = 0; c < channels; ++c) {
          if (r < open && rows[static_cast<size_t>(r)] == c) {
            ++r;
            continue;
          }
          for (int64_t k = 0; k < row_length; ++k)
            REQUIRE(test::same_bits(got[static_cast<size_t>(c * row_length + k)],
                                    base[static_cast<size_t>(c * row_length + k)]));
        }
      }
}
