// gather_channels, scatter_channels, scatter_add_rows and bias_backward_rows on the CPU: the reference the CUDA
// kernels are tested against, checked here against plain index arithmetic.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/rng.h"
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

TEST_CASE("scatter_channels puts compact channels in place and leaves the others alone", "[gather]") {
  const Tensor src = counting({2, 2, 3});  // src[o, r, p] = 6 o + 3 r + p
  const std::vector<int64_t> rows{1, 4};
  Tensor dst({2, 5, 3});
  dst.fill(-1.0f);
  scatter_channels(src, rows.data(), dst);
  REQUIRE(dst.to_vector() == std::vector<float>{-1, -1, -1, 0, 1, 2,  -1, -1, -1, -1, -1, -1, 3, 4, 5,
                                                -1, -1, -1, 6, 7, 8,  -1, -1, -1, -1, -1, -1, 9, 10, 11});
  Tensor wrong({2, 5, 4});
  REQUIRE_THROWS_WITH(scatter_channels(src, rows.data(), wrong),
                      Catch::Contains("cannot scatter [2, 2, 3] into the channels of [2, 5, 4]"));
}

TEST_CASE("scatter_channels undoes gather_channels on random data of awkward sizes", "[gather]") {
  // Scattered channels (copied one by one) and blocks of adjacent ones (copied run by run).
  Rng rng(3);
  for (const Shape& shape :
       {Shape{37, 29}, Shape{3, 33, 7, 5}, Shape{5, 1, 3}, Shape{67, 403}, Shape{2000, 403}, Shape{2, 150}})
    for (const int64_t block : {int64_t{1}, int64_t{7}}) {
      INFO(shape_to_string(shape) << ", blocks of " << block);
      Tensor src(shape);
      for (int64_t i = 0; i < src.numel(); ++i) src[i] = static_cast<float>(rng.normal());
      std::vector<int64_t> rows;
      for (int64_t c = 0; c < shape[1]; c += block)
        if (rng.uniform() < 0.4 || c + block >= shape[1])
          for (int64_t k = c; k < std::min(shape[1], c + block); ++k) rows.push_back(k);
      Shape compact_shape = shape;
      compact_shape[1] = static_cast<int64_t>(rows.size());
      Tensor compact(compact_shape), back(shape);
      gather_channels(src, rows.data(), static_cast<int64_t>(rows.size()), compact);
      scatter_channels(compact, rows.data(), back);
      const int64_t inner = src.numel() / (shape[0] * shape[1]);
      std::vector<bool> listed(static_cast<size_t>(shape[1]), false);
      for (const int64_t c : rows) listed[static_cast<size_t>(c)] = true;
      int64_t wrong = 0;  // one REQUIRE per element would be slow on the largest case
      for (int64_t i = 0; i < src.numel(); ++i)
        wrong += back[i] != (listed[static_cast<size_t>((i / inner) % shape[1])] ? src[i] : 0.0f);
      REQUIRE(wrong == 0);
    }
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

TEST_CASE("bias_backward_rows sums each open channel exactly as bias_backward does, on awkward sizes", "[gather]") {
  // Read in place (no gathered copy), in the same order: bit for bit the full gradient's channel,
  // for [N, C] (column sums) and [N, C, H, W] (plane sums, split across threads when large).
  Rng rng(8);
  for (const Shape& shape : {Shape{37, 29}, Shape{5, 33, 7, 3}, Shape{131, 70, 9, 11}}) {
    INFO(shape_to_string(shape));
    Tensor dy(shape);
    for (int64_t i = 0; i < dy.numel(); ++i) dy[i] = static_cast<float>(rng.normal());
    Tensor full({shape[1]});
    bias_backward(dy, full, /*accumulate=*/false);
    std::vector<int64_t> rows;
    for (int64_t c = 0; c < shape[1]; ++c)
      if (rng.uniform() < 0.45) rows.push_back(c);
    Tensor db({shape[1]});  // zeros: 0 + the channel sum is bias_backward's value exactly
    RowIndex index;
    bias_backward_rows(dy, rows, index, db);
    for (int64_t c = 0; c < shape[1]; ++c) {
      const bool open = std::binary_search(rows.begin(), rows.end(), c);
      INFO("channel " << c);
      REQUIRE(db[c] == (open ? full[c] : 0.0f));
    }
  }
  Tensor dy({2, 3}), wrong({4});
  RowIndex index;
  REQUIRE_THROWS_WITH(bias_backward_rows(dy, {0}, index, wrong),
                      Catch::Contains("bias gradient [4] does not fit the channels of [2, 3]"));
}
