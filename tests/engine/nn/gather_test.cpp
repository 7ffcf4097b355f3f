// gather_channels, scatter_add_rows and bias_backward_rows on the CPU: the reference the CUDA
// kernels are tested against, checked here against plain index arithmetic.
#include <catch2/catch.hpp>

#include <vector>

#include "engine/core/error.h"
#include "engine/core/tensor.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/gather.h"

using namespace nnr;

namespace {

Tensor counting(Shape shape) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  return t;
}

}  // namespace

TEST_CASE("gather_channels copies the selected channels of axis 1 in the given order", "[gather]") {
  const Tensor src = counting({2, 5, 3});  // src[o, c, p] = 15 o + 3 c + p
  const std::vector<int64_t> rows{4, 1};
  RowIndex index;
  Tensor dst({2, 2, 3});
  gather_channels(src, index.on(src.placement(), rows), 2, dst);
  REQUIRE(dst.to_vector() == std::vector<float>{12, 13, 14, 3, 4, 5, 27, 28, 29, 18, 19, 20});

  const Tensor matrix = counting({3, 4});  // a Linear's dy: inner = 1
  Tensor columns({3, 1});
  const std::vector<int64_t> last{3};
  gather_channels(matrix, index.on(matrix.placement(), last), 1, columns);
  REQUIRE(columns.to_vector() == std::vector<float>{3, 7, 11});

  Tensor wrong({2, 3, 3});
  REQUIRE_THROWS_WITH(gather_channels(src, rows.data(), 2, wrong),
                      Catch::Contains("cannot gather 2 channels of [2, 5, 3] into [2, 3, 3]"));
}

TEST_CASE("scatter_add_rows adds compact rows into the selected rows and leaves the others alone", "[gather]") {
  Tensor dst({4, 2, 2});
  dst.fill(1.0f);
  const Tensor src = counting({2, 2, 2});
  const std::vector<int64_t> rows{0, 3};
  scatter_add_rows(src, rows.data(), dst);
  REQUIRE(dst.to_vector() == std::vector<float>{1, 2, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 5, 6, 7, 8});

  Tensor other({4, 3});
  REQUIRE_THROWS_WITH(scatter_add_rows(src, rows.data(), other),
                      Catch::Contains("rows of [2, 2, 2] do not fit rows of [4, 3]"));
}

TEST_CASE("bias_backward_rows equals the full bias gradient on the selected channels only", "[gather]") {
  Tensor dy({3, 6, 2, 5});
  for (int64_t i = 0; i < dy.numel(); ++i) dy[i] = static_cast<float>((i * 37) % 11) - 5.0f;
  Tensor full({6});
  bias_backward(dy, full, /*accumulate=*/false);
  Tensor db({6});
  db.fill(0.5f);
  const std::vector<int64_t> rows{1, 2, 5};
  RowIndex index;
  bias_backward_rows(dy, rows, index, db);
  for (int64_t c = 0; c < 6; ++c) {
    const bool open = c == 1 || c == 2 || c == 5;
    INFO("channel " << c);
    REQUIRE(db[c] == (open ? 0.5f + full[c] : 0.5f));
  }
  bias_backward_rows(dy, {}, index, db);  // nothing open: nothing changes
  REQUIRE(db[0] == 0.5f);
}
