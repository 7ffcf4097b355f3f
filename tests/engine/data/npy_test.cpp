#include "engine/data/npy.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "tests/engine/data/temp_dir.h"

using nnr::test::TempDir;

namespace {

template <typename T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

TEST_CASE("npy float32 features round-trip bit-exactly through save_npy", "[npy]") {
  TempDir dir;
  nnr::Tensor t = nnr::Tensor::from_vector({2, 3}, {0.5f, -1.25f, 3e-8f, 7.0f, 1e30f, -0.0f});
  nnr::save_npy(dir.file("x.npy"), t);
  nnr::NpyArray a = nnr::read_npy(dir.file("x.npy"));
  REQUIRE(a.descr == "<f4");
  REQUIRE(a.shape == nnr::Shape{2, 3});
  nnr::Tensor back = nnr::load_npy(dir.file("x.npy"));
  REQUIRE(back.shape() == t.shape());
  REQUIRE(std::memcmp(back.data(), t.data(), t.bytes()) == 0);
  // numpy's header layout: data starts on a 64-byte boundary.
  REQUIRE((nnr::test::read_bytes(dir.file("x.npy")).size() - t.bytes()) % 64 == 0);
}

TEST_CASE("npy uint8 features are scaled to [0, 1], rank-1 features become [N, 1]", "[npy]") {
  TempDir dir;
  nnr::save_npy_raw(dir.file("u8.npy"), "|u1", {2, 2}, {0, 51, 255, 1});
  nnr::Tensor t = nnr::load_npy(dir.file("u8.npy"));
  REQUIRE(t.to_vector() == std::vector<float>{0.0f, 51 / 255.0f, 1.0f, 1 / 255.0f});
  nnr::save_npy_raw(dir.file("v.npy"), "<f4", {3}, raw<float>({1, 2, 3}));
  REQUIRE(nnr::load_npy(dir.file("v.npy")).shape() == nnr::Shape{3, 1});
}

TEST_CASE("npy labels accept uint8, int32, int64 and whole float32, and reject the rest", "[npy]") {
  TempDir dir;
  nnr::save_npy_raw(dir.file("y64.npy"), "<i8", {3}, raw<int64_t>({2, 0, 7}));
  REQUIRE(nnr::load_npy_labels(dir.file("y64.npy")) == std::vector<int32_t>{2, 0, 7});
  nnr::save_npy_raw(dir.file("y32.npy"), "<i4", {2}, raw<int32_t>({1, 4}));
  REQUIRE(nnr::load_npy_labels(dir.file("y32.npy")) == std::vector<int32_t>{1, 4});
  nnr::save_npy_raw(dir.file("yu8.npy"), "|u1", {2}, {5, 6});
  REQUIRE(nnr::load_npy_labels(dir.file("yu8.npy")) == std::vector<int32_t>{5, 6});
  nnr::save_npy_raw(dir.file("yf.npy"), "<f4", {2}, raw<float>({1.0f, 3.0f}));
  REQUIRE(nnr::load_npy_labels(dir.file("yf.npy")) == std::vector<int32_t>{1, 3});

  nnr::save_npy_raw(dir.file("neg.npy"), "<i8", {2}, raw<int64_t>({1, -1}));
  REQUIRE_THROWS_WITH(nnr::load_npy_labels(dir.file("neg.npy")), Catch::Contains("label out of range at index 1"));
  nnr::save_npy_raw(dir.file("frac.npy"), "<f4", {1}, raw<float>({1.5f}));
  REQUIRE_THROWS_WITH(nnr::load_npy_labels(dir.file("frac.npy")), Catch::Contains("expected an integer"));
  REQUIRE_THROWS_WITH(nnr::load_npy_labels(dir.file("y64.npy"), 5),
                      Catch::Contains("expected an integer in 0..4, got 7"));
  nnr::save_npy_raw(dir.file("y2d.npy"), "<i8", {1, 2}, raw<int64_t>({1, 2}));
  REQUIRE_THROWS_WITH(nnr::load_npy_labels(dir.file("y2d.npy")),
                      Catch::Contains("expected labels of shape [N], got [1, 2]"));
}

TEST_CASE("npy reader names the file and the fault for bad input", "[npy]") {
  TempDir dir;
  SECTION("wrong dtype") {
    nnr::save_npy_raw(dir.file("f8.npy"), "<f8", {2}, raw<double>({1, 2}));
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("f8.npy")),
                        Catch::Contains("f8.npy: unsupported dtype '<f8': expected float32 '<f4' or uint8 '|u1'"));
    nnr::save_npy_raw(dir.file("be.npy"), ">f4", {1}, raw<float>({1}));
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("be.npy")), Catch::Contains("unsupported dtype '>f4'"));
    nnr::save_npy_raw(dir.file("i8.npy"), "<i8", {1, 1}, raw<int64_t>({1}));
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("i8.npy")), Catch::Contains("unsupported dtype '<i8' for features"));
  }
  SECTION("fortran order") {
    nnr::save_npy_raw(dir.file("x.npy"), "<f4", {2, 2}, raw<float>({1, 2, 3, 4}));
    auto bytes = nnr::test::read_bytes(dir.file("x.npy"));
    std::string s(bytes.begin(), bytes.end());
    s.replace(s.find("False"), 5, "True ");
    nnr::test::write_text(dir.file("f.npy"), s);
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("f.npy")),
                        Catch::Contains("f.npy: Fortran-order array: expected C order"));
  }
  SECTION("truncated data and trailing bytes") {
    nnr::Tensor t({4, 5});
    nnr::save_npy(dir.file("x.npy"), t);
    auto bytes = nnr::test::read_bytes(dir.file("x.npy"));
    auto cut = bytes;
    cut.resize(cut.size() - 3);
    nnr::test::write_bytes(dir.file("cut.npy"), cut);
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("cut.npy")),
                        Catch::Contains("cut.npy: truncated: expected 80 bytes of <f4 data for shape [4, 5], got 77"));
    cut.resize(20);
    nnr::test::write_bytes(dir.file("cut2.npy"), cut);
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("cut2.npy")), Catch::Contains("cut2.npy: truncated: header says"));
    bytes.push_back(0);
    nnr::test::write_bytes(dir.file("long.npy"), bytes);
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("long.npy")), Catch::Contains("1 bytes more"));
  }
  SECTION("wrong magic, missing file, rank 5, NaN") {
    nnr::test::write_text(dir.file("text.npy"), "label,x\n1,2\n");
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("text.npy")), Catch::Contains("text.npy: wrong magic"));
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("none.npy")), Catch::Contains("none.npy: cannot open: No such file"));
    nnr::save_npy_raw(dir.file("r5.npy"), "|u1", {1, 1, 1, 1, 2}, {1, 2});
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("r5.npy")), Catch::Contains("rank 5 shape [1, 1, 1, 1, 2]"));
    nnr::save_npy_raw(dir.file("nan.npy"), "<f4", {1, 2}, raw<float>({1.0f, std::nanf("")}));
    REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("nan.npy")),
                        Catch::Contains("nan.npy: non-finite feature value") && Catch::Contains("flat index 1"));
  }
}

TEST_CASE("npy headers whose element or byte count overflows are refused before allocating", "[npy]") {
  TempDir dir;
  // Header only: the product 2^64 wraps to 0 in int64 and would match the 0 data bytes.
  nnr::save_npy_raw(dir.file("huge.npy"), "<f4", {int64_t(1) << 32, int64_t(1) << 32}, {});
  REQUIRE_THROWS_WITH(nnr::read_npy(dir.file("huge.npy")),
                      Catch::Contains("[npy] " + dir.file("huge.npy") + ": wrong dimensions: implausibly large") &&
                          Catch::Contains("[4294967296, 4294967296]"));
  REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("huge.npy")), Catch::Contains("implausibly large"));
  // 2^62 elements fit in int64, but 4 bytes each wrap the byte count around to 0.
  nnr::save_npy_raw(dir.file("bytes.npy"), "<f4", {int64_t(1) << 31, int64_t(1) << 31}, {});
  REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("bytes.npy")),
                      Catch::Contains("bytes.npy: wrong dimensions: implausibly large shape [2147483648, 2147483648]"));
  nnr::save_npy_raw(dir.file("labels.npy"), "<i8", {int64_t(1) << 31, int64_t(1) << 30}, {});  // 2^61 x 8 bytes
  REQUIRE_THROWS_WITH(nnr::load_npy_labels(dir.file("labels.npy"), 10), Catch::Contains("implausibly large"));
  // A large but representable shape with no data is simply truncated.
  nnr::save_npy_raw(dir.file("big.npy"), "|u1", {int64_t(1) << 20, int64_t(1) << 20}, {});
  REQUIRE_THROWS_WITH(nnr::load_npy(dir.file("big.npy")), Catch::Contains("truncated: expected 1099511627776 bytes"));
}
