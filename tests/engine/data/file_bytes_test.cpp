#include "engine/data/file_bytes.h"

#include <zlib.h>

#include <catch2/catch.hpp>

#include "tests/engine/data/temp_dir.h"

using nnr::test::TempDir;

TEST_CASE("read_file_bytes reads a plain file into one buffer of its size, never regrown", "[file_bytes]") {
  // Issue #16: the reader once grew its buffer in 1 MiB steps past the reserved file size, so a
  // file took twice its size (and a copy) to load. Odd sizes around the old step too.
  TempDir dir;
  for (const size_t size : {size_t(0), size_t(1), size_t(1) << 20, (size_t(3) << 20) + 17}) {
    INFO(size);
    std::vector<uint8_t> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 31 + 7);
    const std::string path = dir.file("data.bin");
    nnr::write_file_bytes(path, bytes, "test");
    const std::vector<uint8_t> got = nnr::read_file_bytes(path, "test");
    CHECK(got == bytes);
    CHECK(got.capacity() <= size + 1);  // the file's size and the one byte that sees its end
  }
}

TEST_CASE("read_file_bytes grows past the file size for gzip data that decompresses larger", "[file_bytes]") {
  TempDir dir;
  std::vector<uint8_t> bytes((size_t(5) << 20) + 3);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i / 4096) % 251);
  const std::string path = dir.file("data.bin.gz");
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
  CHECK(nnr::read_file_bytes(path, "test") == bytes);
}
