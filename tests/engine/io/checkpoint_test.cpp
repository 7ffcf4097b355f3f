#include "engine/io/checkpoint.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "tests/engine/data/temp_dir.h"
#include "tests/engine/io/safetensors_bytes.h"

using nnr::Shape;
using nnr::Tensor;
using nnr::test::TempDir;

namespace {

// A small MLP's state_dict in PyTorch's names and layouts, with awkward values (negative zero,
// subnormals, the largest float) so "bit-exact" means something.
struct Model {
  Tensor w0, b0, w2, b2;
  Model() : w0(Shape{5, 7}), b0(Shape{5}), w2(Shape{3, 5}), b2(Shape{3}) {
    nnr::Rng rng(3);
    for (Tensor* t : {&w0, &b0, &w2, &b2})
      for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = static_cast<float>(rng.normal());
    w0[0] = -0.0f;
    w0[1] = 1e-40f;
    w0[2] = 3.4028235e38f;
  }
  std::vector<std::pair<std::string, const Tensor*>> named() const {
    return {{"0.weight", &w0}, {"0.bias", &b0}, {"2.weight", &w2}, {"2.bias", &b2}};
  }
};

const std::map<std::string, std::string> kMeta = {{nnr::kMetaModelSpec, "mlp:7-5-3"}};

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace

TEST_CASE("checkpoint round trip is bit-exact and keeps names, order and metadata", "[checkpoint]") {
  TempDir dir;
  Model m;
  const std::string p = dir.file("model.safetensors");
  nnr::save_checkpoint(p, m.named(), kMeta);
  nnr::Checkpoint ck = nnr::load_checkpoint(p);
  REQUIRE(ck.path == p);
  REQUIRE(ck.tensors.size() == 4);
  const auto named = m.named();
  for (size_t i = 0; i < named.size(); ++i) {
    REQUIRE(ck.tensors[i].name == named[i].first);
    REQUIRE(same_bits(ck.tensors[i].value, *named[i].second));
  }
  REQUIRE(std::signbit(ck.find("0.weight")->data()[0]));
  REQUIRE(ck.metadata.at(nnr::kMetaModelSpec) == "mlp:7-5-3");
  REQUIRE(ck.metadata.at(nnr::kMetaFormatVersion) == "1");
  REQUIRE(ck.metadata.at("nnr.crc32.0.weight").size() == 8);
  REQUIRE(ck.find("1.weight") == nullptr);
  REQUIRE(same_bits(ck.require("2.bias", {3}), m.b2));
  // The data area starts 8-byte aligned, like files from safetensors' own writer.
  REQUIRE((nnr::test::read_bytes(p).size() - 4 * (35 + 5 + 15 + 3)) % 8 == 0);
}

TEST_CASE("checkpoint require names the file, the tensor and both shapes", "[checkpoint]") {
  TempDir dir;
  Model m;
  nnr::save_checkpoint(dir.file("m.safetensors"), m.named(), kMeta);
  nnr::Checkpoint ck = nnr::load_checkpoint(dir.file("m.safetensors"));
  REQUIRE_THROWS_WITH(ck.require("0.weight", {5, 8}),
                      Catch::Contains("m.safetensors: tensor '0.weight' has shape [5, 7], expected [5, 8]"));
  REQUIRE_THROWS_WITH(ck.require("4.weight", {2, 3}),
                      Catch::Contains("no tensor '4.weight'") && Catch::Contains("the file has: 0.weight, 0.bias"));
}

TEST_CASE("checkpoint with one flipped data byte fails naming the tensor", "[checkpoint]") {
  TempDir dir;
  Model m;
  const std::string p = dir.file("m.safetensors");
  nnr::save_checkpoint(p, m.named(), kMeta);
  auto bytes = nnr::test::read_bytes(p);
  // Last byte of the file: inside the last tensor in the file, 2.bias.
  bytes.back() ^= 0x01;
  nnr::test::write_bytes(p, bytes);
  REQUIRE_THROWS_WITH(nnr::load_checkpoint(p),
                      Catch::Contains("[checkpoint] " + p + ": tensor '2.bias' is corrupt: CRC32 of its bytes is"));
}

TEST_CASE("checkpoint with a changed header value fails on the header CRC", "[checkpoint]") {
  TempDir dir;
  Model m;
  const std::string p = dir.file("m.safetensors");
  nnr::save_checkpoint(p, m.named(), kMeta);
  auto bytes = nnr::test::read_bytes(p);
  std::string s(bytes.begin(), bytes.end());
  s.replace(s.find("mlp:7-5-3"), 9, "mlp:7-5-4");  // still valid JSON, wrong spec
  nnr::test::write_text(p, s);
  REQUIRE_THROWS_WITH(nnr::load_checkpoint(p), Catch::Contains(p + ": header is corrupt: its CRC32 is"));
}

TEST_CASE("truncated checkpoints fail at every cut point", "[checkpoint]") {
  TempDir dir;
  Model m;
  const std::string p = dir.file("m.safetensors");
  nnr::save_checkpoint(p, m.named(), kMeta);
  const auto bytes = nnr::test::read_bytes(p);
  for (size_t keep : {size_t{0}, size_t{5}, size_t{8}, size_t{60}, bytes.size() - 100, bytes.size() - 1}) {
    INFO("kept " << keep << " of " << bytes.size() << " bytes");
    nnr::test::write_bytes(dir.file("cut.safetensors"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + keep));
    REQUIRE_THROWS_WITH(nnr::load_checkpoint(dir.file("cut.safetensors")),
                        Catch::StartsWith("[checkpoint] " + dir.file("cut.safetensors") + ": ") &&
                            (Catch::Contains("truncated") || Catch::Contains("run past the data area")));
  }
}

TEST_CASE("missing checkpoint and unwritable destination are reported with the path", "[checkpoint]") {
  TempDir dir;
  Model m;
  REQUIRE_THROWS_WITH(nnr::load_checkpoint(dir.file("none.safetensors")),
                      Catch::Contains(dir.file("none.safetensors") + ": cannot open: No such file or directory"));
  const std::string p = dir.file("no/such/dir/m.safetensors");
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, m.named(), kMeta), Catch::Contains("[checkpoint] cannot write " + p) &&
                                                                     Catch::Contains("No such file or directory"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(dir.path(), m.named(), kMeta), Catch::Contains("it is a directory"));
}

TEST_CASE("save_checkpoint refuses bad inputs and leaves the previous file untouched", "[checkpoint]") {
  TempDir dir;
  Model m;
  const std::string p = dir.file("m.safetensors");
  nnr::save_checkpoint(p, m.named(), kMeta);
  const auto before = nnr::test::read_bytes(p);

  Tensor nan_w = m.w2.clone();
  nan_w[4] = std::nanf("");
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"0.weight", &m.w0}, {"2.weight", &nan_w}}, kMeta),
                      Catch::Contains("tensor '2.weight' has a non-finite value (nan) at flat index 4"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"a", &m.w0}, {"a", &m.b0}}, kMeta),
                      Catch::Contains("'a' is given twice"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"__metadata__", &m.w0}}, kMeta), Catch::Contains("reserved"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"", &m.w0}}, kMeta), Catch::Contains("empty name"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, {{"x", nullptr}}, kMeta), Catch::Contains("'x' is undefined"));
  REQUIRE_THROWS_WITH(nnr::save_checkpoint(p, m.named(), {{"nnr.crc32.0.weight", "0"}}),
                      Catch::Contains("'nnr.crc32.0.weight' is set by save_checkpoint itself"));
  REQUIRE_THROWS_AS(nnr::save_checkpoint(p, {{"bad\xff", &m.w0}}, kMeta), nnr::InvalidArgument);
  REQUIRE(nnr::test::read_bytes(p) == before);
}
