#include "engine/data/idx.h"

#include <zlib.h>

#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "tests/engine/data/temp_dir.h"

using nnr::test::TempDir;

namespace {

std::vector<uint8_t> ramp(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 % 256);
  return v;
}

void gzip_file(const std::string& from, const std::string& to) {
  const std::vector<uint8_t> bytes = nnr::test::read_bytes(from);
  gzFile f = gzopen(to.c_str(), "wb");
  REQUIRE(f);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

}  // namespace

TEST_CASE("idx images load raw and gzipped as [N, 1, H, W] scaled to [0, 1]", "[idx]") {
  TempDir dir;
  const auto values = ramp(2 * 3 * 4);
  nnr::save_idx(dir.file("img.idx"), {2, 3, 4}, values);
  gzip_file(dir.file("img.idx"), dir.file("img.idx.gz"));
  for (const std::string name : {"img.idx", "img.idx.gz"}) {
    nnr::Tensor t = nnr::load_idx_images(dir.file(name));
    REQUIRE(t.shape() == nnr::Shape{2, 1, 3, 4});
    for (size_t i = 0; i < values.size(); ++i) REQUIRE(t[static_cast<int64_t>(i)] == values[i] / 255.0f);
  }
  nnr::save_idx(dir.file("flat.idx"), {3, 5}, ramp(15));
  REQUIRE(nnr::load_idx_images(dir.file("flat.idx")).shape() == nnr::Shape{3, 5});
}

TEST_CASE("idx labels load as int32 and are checked against num_classes", "[idx]") {
  TempDir dir;
  nnr::save_idx(dir.file("y.idx"), {4}, {0, 3, 9, 2});
  REQUIRE(nnr::load_idx_labels(dir.file("y.idx")) == std::vector<int32_t>{0, 3, 9, 2});
  REQUIRE(nnr::load_idx_labels(dir.file("y.idx"), 10).size() == 4);
  REQUIRE_THROWS_WITH(nnr::load_idx_labels(dir.file("y.idx"), 5),
                      Catch::Contains("y.idx: label out of range at index 2: expected 0..4, got 9"));
}

TEST_CASE("idx reader names the file and the fault for bad input", "[idx]") {
  TempDir dir;
  nnr::save_idx(dir.file("img.idx"), {2, 3, 4}, ramp(24));
  auto good = nnr::test::read_bytes(dir.file("img.idx"));

  SECTION("missing file") {
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("nope.idx")),
                        Catch::Contains("[idx] " + dir.file("nope.idx") + ": cannot open: No such file or directory"));
  }
  SECTION("truncated values") {
    auto cut = good;
    cut.resize(cut.size() - 4);
    nnr::test::write_bytes(dir.file("cut.idx"), cut);
    REQUIRE_THROWS_WITH(nnr::load_idx_images(dir.file("cut.idx")),
                        Catch::Contains("cut.idx: truncated: expected 24 bytes of values for shape [2, 3, 4], got 20"));
  }
  SECTION("truncated header") {
    nnr::test::write_bytes(dir.file("cut.idx"), {0, 0, 8, 3, 0, 0});
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("cut.idx")), Catch::Contains("truncated: expected a 16-byte header"));
    nnr::test::write_bytes(dir.file("empty.idx"), {});
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("empty.idx")), Catch::Contains("empty.idx: truncated"));
  }
  SECTION("truncated gzip stream") {
    gzip_file(dir.file("img.idx"), dir.file("img.idx.gz"));
    auto gz = nnr::test::read_bytes(dir.file("img.idx.gz"));
    gz.resize(gz.size() / 2);
    nnr::test::write_bytes(dir.file("cut.idx.gz"), gz);
    REQUIRE_THROWS_WITH(
        nnr::read_idx(dir.file("cut.idx.gz")),
        Catch::Contains("cut.idx.gz: corrupt or truncated gzip data") || Catch::Contains("cut.idx.gz: truncated"));
  }
  SECTION("wrong magic") {
    auto bad = good;
    bad[0] = 0x50;
    nnr::test::write_bytes(dir.file("bad.idx"), bad);
    REQUIRE_THROWS_WITH(
        nnr::read_idx(dir.file("bad.idx")),
        Catch::Contains("bad.idx: wrong magic: expected an IDX file starting 00 00 08 <rank>, got 50 00 08 03"));
  }
  SECTION("unsupported value type") {
    auto bad = good;
    bad[2] = 0x0D;
    nnr::test::write_bytes(dir.file("f.idx"), bad);
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("f.idx")), Catch::Contains("unsupported value type float32 (0x0D)"));
  }
  SECTION("wrong dimensions") {
    auto extra = good;
    extra.push_back(1);
    nnr::test::write_bytes(dir.file("extra.idx"), extra);
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("extra.idx")),
                        Catch::Contains("wrong dimensions: shape [2, 3, 4] needs 24"));
    auto rank0 = good;
    rank0[3] = 0;
    nnr::test::write_bytes(dir.file("r0.idx"), rank0);
    REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("r0.idx")), Catch::Contains("expected rank 1 to 4, got 0"));
    REQUIRE_THROWS_WITH(nnr::load_idx_labels(dir.file("img.idx")),
                        Catch::Contains("expected labels of shape [N], got shape [2, 3, 4]"));
    nnr::save_idx(dir.file("y.idx"), {3}, {1, 2, 3});
    REQUIRE_THROWS_WITH(nnr::load_idx_images(dir.file("y.idx")), Catch::Contains("is this a labels file?"));
  }
}

TEST_CASE("idx dimensions whose product would wrap around are refused before allocating", "[idx]") {
  TempDir dir;
  const auto header = [](std::vector<uint32_t> dims) {
    std::vector<uint8_t> bytes = {0, 0, 8, static_cast<uint8_t>(dims.size())};
    for (uint32_t d : dims)
      for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>(d >> s));
    return bytes;
  };
  // 2^20 * 2^20 * 2^24 = 2^64, which wraps to 0 and would match the 0 bytes of values.
  nnr::test::write_bytes(dir.file("wrap.idx"), header({1u << 20, 1u << 20, 1u << 24}));
  REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("wrap.idx")),
                      Catch::Contains("[idx] " + dir.file("wrap.idx") + ": wrong dimensions: ") &&
                          Catch::Contains("is implausibly large"));
  REQUIRE_THROWS_WITH(nnr::load_idx_images(dir.file("wrap.idx")), Catch::Contains("implausibly large"));
  nnr::test::write_bytes(dir.file("max.idx"), header({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}));
  REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("max.idx")), Catch::Contains("implausibly large"));
  // Exactly at the 2^40 limit is allowed (and, with no values, truncated); a zero dimension is fine.
  nnr::test::write_bytes(dir.file("limit.idx"), header({1u << 20, 1u << 20}));
  REQUIRE_THROWS_WITH(nnr::read_idx(dir.file("limit.idx")),
                      Catch::Contains("truncated: expected 1099511627776 bytes of values"));
  nnr::test::write_bytes(dir.file("zero.idx"), header({0, 1u << 30, 1u << 30}));
  REQUIRE(nnr::read_idx(dir.file("zero.idx")).values.empty());
  // Saving refuses negative dimensions even when their product matches, naming the file.
  REQUIRE_THROWS_WITH(nnr::save_idx(dir.file("neg.idx"), {-1, -3}, {1, 2, 3}),
                      Catch::Contains("[idx] " + dir.file("neg.idx") + ": cannot save 3 values as shape [-1, -3]"));
}
