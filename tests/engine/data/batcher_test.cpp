#include "engine/data/batcher.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>

#include "engine/core/error.h"

namespace {

// Sample i has every feature equal to i and label i % 3, so a batch shows which rows it holds.
nnr::Dataset numbered(int64_t n) {
  nnr::Tensor x({n, 2, 3});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i / 6);
  std::vector<int32_t> y;
  for (int64_t i = 0; i < n; ++i) y.push_back(static_cast<int32_t>(i % 3));
  return nnr::make_dataset(std::move(x), std::move(y));
}

std::vector<std::vector<int64_t>> epoch_indices(nnr::Batcher& b) {
  std::vector<std::vector<int64_t>> out;
  nnr::Batch batch;
  while (b.next(batch)) out.push_back(batch.indices);
  return out;
}

}  // namespace

TEST_CASE("batcher visits every sample once per epoch and keeps the last partial batch kept", "[batcher]") {
  nnr::Dataset d = numbered(10);
  nnr::Batcher b(d, {4, true, false}, nnr::Rng(7));
  REQUIRE(b.batches_per_epoch() == 3);
  nnr::Batch batch;
  std::vector<int64_t> seen;
  std::vector<int64_t> sizes;
  while (b.next(batch)) {
    REQUIRE(batch.x.shape() == nnr::Shape{batch.size(), 2, 3});
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int64_t s = batch.indices[i];
      REQUIRE(batch.x[i * 6 + 5] == static_cast<float>(s));
      REQUIRE(batch.y[i] == s % 3);
      seen.push_back(s);
    }
    sizes.push_back(batch.size());
  }
  REQUIRE(sizes == std::vector<int64_t>{4, 4, 2});
  std::sort(seen.begin(), seen.end());
  std::vector<int64_t> all(10);
  std::iota(all.begin(), all.end(), 0);
  REQUIRE(seen == all);
  REQUIRE(b.epoch() == 1);
}

TEST_CASE("batcher is reproducible from its seed and reshuffles every epoch", "[batcher]") {
  nnr::Dataset d = numbered(50);
  nnr::Batcher a(d, {8}, nnr::Rng(42)), b(d, {8}, nnr::Rng(42)), c(d, {8}, nnr::Rng(43));
  const auto a1 = epoch_indices(a), a2 = epoch_indices(a);
  REQUIRE(a1 == epoch_indices(b));
  REQUIRE(a2 == epoch_indices(b));
  REQUIRE(a1 != a2);
  REQUIRE(a1 != epoch_indices(c));
  REQUIRE(a.epoch() == 2);
}

TEST_CASE("batcher drop_last, no shuffle, subsets and empty data", "[batcher]") {
  nnr::Dataset d = numbered(10);
  nnr::Batcher dropped(d, {4, false, true}, nnr::Rng(1));
  REQUIRE(dropped.batches_per_epoch() == 2);
  REQUIRE(epoch_indices(dropped) == std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});

  nnr::Batcher subset(d, {3, 5, 9}, {2, false, false}, nnr::Rng(1));
  REQUIRE(epoch_indices(subset) == std::vector<std::vector<int64_t>>{{3, 5}, {9}});
  REQUIRE_THROWS_WITH(nnr::Batcher(d, {3, 10}, {2}, nnr::Rng(1)),
                      Catch::Contains("[batcher] subset index 10 at position 1 is outside the data set of 10 samples"));
  REQUIRE_THROWS_WITH(nnr::Batcher(d, {0}, nnr::Rng(1)), Catch::Contains("batch size must be at least 1, got 0"));

  nnr::Dataset empty = nnr::make_dataset(nnr::Tensor({0, 4}), {});
  nnr::Batcher e(empty, {4}, nnr::Rng(1));
  nnr::Batch batch;
  REQUIRE_FALSE(e.next(batch));
  REQUIRE(e.batches_per_epoch() == 0);

  nnr::Dataset single = numbered(1);
  nnr::Batcher one(single, {4}, nnr::Rng(1));
  REQUIRE(epoch_indices(one) == std::vector<std::vector<int64_t>>{{0}});
}

TEST_CASE("gather_rows stacks rows and rejects out-of-range indices", "[batcher]") {
  nnr::Tensor x = nnr::Tensor::from_vector({3, 2}, {0, 1, 10, 11, 20, 21});
  REQUIRE(nnr::gather_rows(x, {2, 0, 2}).to_vector() == std::vector<float>{20, 21, 0, 1, 20, 21});
  REQUIRE(nnr::gather_rows(x, {}).shape() == nnr::Shape{0, 2});
  REQUIRE_THROWS_WITH(nnr::gather_rows(x, {1, 3}), Catch::Contains("index 3 at position 1 is outside [0, 3)"));
  REQUIRE_THROWS_WITH(nnr::gather_rows(x, {-1}), Catch::Contains("index -1"));
}

TEST_CASE("bytes decode to float(byte) / divisor bit for bit, every byte value, in batches over the parallel size",
          "[batcher]") {
  // Every byte value at several divisors (the decoder divides, vectorised; the reference here is one
  // scalar division per value).
  std::vector<uint8_t> all(256);
  for (int v = 0; v < 256; ++v) all[static_cast<size_t>(v)] = static_cast<uint8_t>(v);
  for (const float divisor : {255.0f, 1.0f, 3.7f, 256.0f}) {
    const nnr::Tensor t = nnr::decode_bytes(nnr::ByteFeatures{{256}, all, divisor});
    for (int v = 0; v < 256; ++v) {
      volatile float reference = static_cast<float>(v);  // keeps this division scalar
      REQUIRE(t[v] == reference / divisor);
    }
  }
  // 70 rows of 785 bytes gathered in a scattered order (repeats included): 54 950 floats, over the
  // size decoded on the loop's threads, each thread fetching its next row while it converts one.
  const int64_t n = 97, per = 785;
  nnr::ByteFeatures bytes{{n, per}, std::vector<uint8_t>(static_cast<size_t>(n * per)), 255.0f};
  for (size_t i = 0; i < bytes.values.size(); ++i) bytes.values[i] = static_cast<uint8_t>((i * 7919) % 251);
  const nnr::Dataset data = nnr::make_dataset(bytes, std::vector<int32_t>(static_cast<size_t>(n), 0));
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 70; ++i) idx.push_back((i * 37 + 5) % n);
  idx[69] = idx[0];
  const nnr::Tensor x = nnr::gather_rows(data, idx);
  REQUIRE(x.shape() == nnr::Shape{70, per});
  for (size_t i = 0; i < idx.size(); ++i)
    for (int64_t k = 0; k < per; ++k) {
      volatile float reference = static_cast<float>(bytes.values[static_cast<size_t>(idx[i] * per + k)]);
      REQUIRE(x[static_cast<int64_t>(i) * per + k] == reference / 255.0f);
    }
}

TEST_CASE("a data set kept as bytes gives the same batches as its floats", "[batcher]") {
  // 11 samples of 3 x 7 = 21 bytes (no multiple of a vector width), batches of 4: the last holds 3.
  const int64_t n = 11, per = 21;
  nnr::ByteFeatures bytes{{n, 3, 7}, std::vector<uint8_t>(static_cast<size_t>(n * per)), 255.0f};
  for (size_t i = 0; i < bytes.values.size(); ++i) bytes.values[i] = static_cast<uint8_t>((i * 101) % 256);
  std::vector<int32_t> y;
  for (int64_t i = 0; i < n; ++i) y.push_back(static_cast<int32_t>(i % 5));
  nnr::Dataset as_bytes = nnr::make_dataset(bytes, y);
  nnr::Dataset as_floats = nnr::make_dataset(nnr::decode_bytes(bytes), y);
  REQUIRE(as_bytes.stores_bytes());
  REQUIRE_FALSE(as_floats.stores_bytes());

  nnr::Batcher a(as_bytes, nnr::BatcherOptions{4, true, false}, nnr::Rng(9));
  nnr::Batcher b(as_floats, nnr::BatcherOptions{4, true, false}, nnr::Rng(9));
  nnr::Batch ba, bb;
  int batches = 0;
  for (int epoch = 0; epoch < 2; ++epoch) {
    while (a.next(ba)) {
      REQUIRE(b.next(bb));
      REQUIRE(ba.indices == bb.indices);
      REQUIRE(ba.y == bb.y);
      REQUIRE(ba.x.shape() == bb.x.shape());
      REQUIRE(ba.x.to_vector() == bb.x.to_vector());
      // Each row is that sample's bytes / 255.
      for (size_t i = 0; i < ba.indices.size(); ++i)
        for (int64_t k = 0; k < per; ++k)
          REQUIRE(ba.x[static_cast<int64_t>(i) * per + k] ==
                  static_cast<float>(bytes.values[static_cast<size_t>(ba.indices[i] * per + k)]) / 255.0f);
      ++batches;
    }
    REQUIRE_FALSE(b.next(bb));  // both epochs end together
  }
  REQUIRE(batches == 6);
  REQUIRE(nnr::gather_rows(as_bytes, {}).shape() == nnr::Shape{0, 3, 7});
  REQUIRE_THROWS_WITH(nnr::gather_rows(as_bytes, {0, 11}), Catch::Contains("index 11 at position 1 is outside [0, 11)"));
}
