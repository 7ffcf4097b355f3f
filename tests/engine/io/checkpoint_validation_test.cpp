// The loader against hand-built safetensors files: files PyTorch would write (no nnr metadata,
// other float dtypes) load; every kind of damage is refused with the tensor named.
#include <catch2/catch.hpp>
#include <cstring>

#include "engine/core/error.h"
#include "engine/io/checkpoint.h"
#include "tests/engine/data/temp_dir.h"
#include "tests/engine/io/safetensors_bytes.h"

using nnr::test::as_bytes;
using nnr::test::TempDir;

namespace {

struct Fixture {
  TempDir dir;
  std::string path = dir.file("t.safetensors");
  nnr::Checkpoint load(const std::string& header, const std::vector<uint8_t>& data) {
    nnr::test::write_bytes(path, nnr::test::safetensors_bytes(header, data));
    return nnr::load_checkpoint(path);
  }
  void fails(const std::string& header, const std::vector<uint8_t>& data, const std::string& message) {
    INFO(header);
    REQUIRE_THROWS_WITH(load(header, data),
                        Catch::StartsWith("[checkpoint] " + path + ": ") && Catch::Contains(message));
  }
};

const std::vector<uint8_t> kSixFloats = as_bytes<float>({1, 2, 3, 4, 5, 6});

}  // namespace

TEST_CASE("a file without nnr metadata loads, in offset order, with any key order", "[checkpoint]") {
  Fixture f;
  nnr::Checkpoint ck =
      f.load(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"__metadata__":{"format":"pt"},)"
             R"("a":{"shape":[2,2],"data_offsets":[0,16],"dtype":"F32"}})",
             as_bytes<float>({1, 2, 3, 4, 5, 6}));
  REQUIRE(ck.tensors.size() == 2);
  REQUIRE(ck.tensors[0].name == "a");
  REQUIRE(ck.tensors[0].value.shape() == nnr::Shape{2, 2});
  REQUIRE(ck.tensors[1].value.to_vector() == std::vector<float>{5, 6});
  REQUIRE(ck.metadata.at("format") == "pt");
}

TEST_CASE("F64, F16 and BF16 tensors are converted to float32, scalars and empty tensors load", "[checkpoint]") {
  Fixture f;
  std::vector<uint8_t> data = as_bytes<double>({0.5, -2.0});
  const std::vector<uint8_t> f16 = as_bytes<uint16_t>({0x3C00, 0xC000, 0x0001});  // 1, -2, 2^-24
  const std::vector<uint8_t> bf16 = as_bytes<uint16_t>({0x3F80, 0xC040});         // 1, -3
  data.insert(data.end(), f16.begin(), f16.end());
  data.insert(data.end(), bf16.begin(), bf16.end());
  const std::vector<uint8_t> scalar = as_bytes<float>({7});
  data.insert(data.end(), scalar.begin(), scalar.end());
  nnr::Checkpoint ck = f.load(
      R"({"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[22,26]},"s":{"dtype":"F32","shape":[],"data_offsets":[26,30]},)"
      R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[30,30]}})",
      data);
  REQUIRE(ck.find("d")->to_vector() == std::vector<float>{0.5f, -2.0f});
  REQUIRE(ck.find("h")->to_vector() == std::vector<float>{1.0f, -2.0f, 0x1.0p-24f});
  REQUIRE(ck.find("b")->to_vector() == std::vector<float>{1.0f, -3.0f});
  REQUIRE(ck.find("s")->rank() == 0);
  REQUIRE((*ck.find("s"))[0] == 7.0f);
  REQUIRE(ck.find("e")->shape() == nnr::Shape{0, 3});
}

TEST_CASE("damaged safetensors headers are refused with the fault named", "[checkpoint]") {
  Fixture f;
  const std::string entry = R"("dtype":"F32","shape":[2,3],"data_offsets":[0,24])";
  f.fails(R"({"w":{"dtype":"I64","shape":[3],"data_offsets":[0,24]}})", kSixFloats,
          "tensor 'w': unsupported dtype I64: expected F32");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", kSixFloats,
          "tensor 'w': shape [2, 2] of F32 needs 16 bytes, data_offsets give 24");
  f.fails(R"({"w":{"dtype":"F32","shape":[1,1,1,2,3],"data_offsets":[0,24]}})", kSixFloats,
          "tensor 'w': rank 5 shape [1, 1, 1, 2, 3], expected rank at most 4");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}})", kSixFloats, "non-integer or negative");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}})", kSixFloats,
          "expected 'data_offsets' [begin, end]");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,3]}})", kSixFloats, "tensor 'w': expected 'data_offsets'");
  f.fails(R"({"w":{"shape":[2,3],"data_offsets":[0,24]}})", kSixFloats, "tensor 'w': missing or non-string 'dtype'");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}})", kSixFloats,
          "tensor 'w': data_offsets [8, 32] run past the data area of 24 bytes");
  f.fails(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}})",
      kSixFloats, "tensor 'v' overlaps tensor 'w'");
  f.fails(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[3],"data_offsets":[12,24]}})",
      kSixFloats, "data area not fully covered: bytes 8..12 before tensor 'v'");
  f.fails(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", kSixFloats,
          "data area not fully covered: 16 bytes after the last tensor");
  f.fails("{\"w\":{" + entry + "},\"w\":{" + entry + "}}", kSixFloats, "header names tensor 'w' twice");
  f.fails("{\"w\":{" + entry + "}", kSixFloats, "header is not valid JSON");
  f.fails("[1,2]", kSixFloats, "header does not start with '{'");
  f.fails(R"({"__metadata__":{"n":1},"w":{)" + entry + "}}", kSixFloats, "__metadata__ value of 'n' is not a string");
  f.fails(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", as_bytes<float>({1, 2, 3, 4, NAN, 6}),
          "tensor 'w' has a non-finite value (nan) at flat index 4");
}

TEST_CASE("header length beyond the file or the 100 MB bound is refused", "[checkpoint]") {
  Fixture f;
  std::vector<uint8_t> bytes(16, 0);
  bytes[0] = 0x00;
  bytes[3] = 0x10;  // 256 MiB
  nnr::test::write_bytes(f.path, bytes);
  REQUIRE_THROWS_WITH(nnr::load_checkpoint(f.path),
                      Catch::Contains("header length 268435456 exceeds the 100000000-byte limit"));
  bytes[3] = 0;
  bytes[0] = 9;
  nnr::test::write_bytes(f.path, bytes);
  REQUIRE_THROWS_WITH(nnr::load_checkpoint(f.path),
                      Catch::Contains("truncated: header length 9 but only 8 bytes follow"));
}

TEST_CASE("nnr metadata is checked: version, CRC presence, stray CRC entries", "[checkpoint]") {
  Fixture f;
  const std::string w = R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})";
  f.fails(R"({"__metadata__":{"nnr.format_version":"2"},)" + w + "}", kSixFloats,
          "format version 2, this nnr reads version 1");
  f.fails(R"({"__metadata__":{"nnr.format_version":"1"},)" + w + "}", kSixFloats,
          "nnr checkpoint without nnr.header_crc32");
}

TEST_CASE("a shape whose element or byte count overflows is refused before allocating", "[checkpoint]") {
  Fixture f;
  f.fails(R"({"w":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,0]}})", {},
          "tensor 'w': shape [1000000000000, 1000000000000] of F32 is implausibly large");
  // 2^62 elements fit in int64, but 4 bytes each wrap around to 0 bytes, which would match.
  f.fails(R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})", {},
          "tensor 'w': shape [2147483648, 2147483648] of F32 is implausibly large");
  f.fails(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]}})", {},
          "tensor 'w': shape [18446744073709551615] has an entry beyond int64");
}
