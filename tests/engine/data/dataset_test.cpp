#include "engine/data/dataset.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "engine/core/error.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"
#include "tests/engine/data/temp_dir.h"

using nnr::test::TempDir;

TEST_CASE("load_dataset reads a CSV file with labels in column 0", "[dataset]") {
  TempDir dir;
  nnr::test::write_text(dir.file("d.csv"), "y,a,b\n2,0.1,0.2\n0,0.3,0.4\n1,0.5,0.6\n");
  nnr::Dataset d = nnr::load_dataset(dir.file("d.csv"));
  REQUIRE(d.size() == 3);
  REQUIRE(d.sample_shape() == nnr::Shape{2});
  REQUIRE(d.labels == std::vector<int32_t>{2, 0, 1});
  REQUIRE(d.num_classes == 3);
}

TEST_CASE("load_dataset reads an IDX images:labels pair and an NPY pair", "[dataset]") {
  TempDir dir;
  nnr::save_idx(dir.file("x.idx"), {3, 2, 2}, std::vector<uint8_t>(12, 255));
  nnr::save_idx(dir.file("y.idx"), {3}, {4, 1, 0});
  nnr::Dataset d = nnr::load_dataset(dir.file("x.idx") + ":" + dir.file("y.idx"));
  REQUIRE(d.stores_bytes());  // 8-bit images stay bytes until a batch reads them
  REQUIRE(d.bytes.shape == nnr::Shape{3, 1, 2, 2});
  REQUIRE(d.size() == 3);
  REQUIRE(d.sample_shape() == nnr::Shape{1, 2, 2});
  std::vector<float> sample(4);
  d.copy_sample(2, sample.data());
  REQUIRE(sample[3] == 1.0f);
  REQUIRE(d.num_classes == 5);

  nnr::save_npy(dir.file("x.npy"), nnr::Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::vector<uint8_t> y(16, 0);
  y[8] = 1;  // int64 labels {0, 1}
  nnr::save_npy_raw(dir.file("y.npy"), "<i8", {2}, y);
  d = nnr::load_dataset(dir.file("x.npy") + ":" + dir.file("y.npy"));
  REQUIRE(d.labels == std::vector<int32_t>{0, 1});
  REQUIRE_FALSE(d.stores_bytes());  // float32 NPY stays float
  REQUIRE(d.features.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});

  // Mixed: IDX images with NPY labels.
  nnr::save_npy_raw(dir.file("y3.npy"), "|u1", {3}, {0, 1, 2});
  REQUIRE(nnr::load_dataset(dir.file("x.idx") + ":" + dir.file("y3.npy")).num_classes == 3);
}

TEST_CASE("load_dataset refuses unknown specs, listing the accepted forms", "[dataset]") {
  TempDir dir;
  nnr::save_npy(dir.file("x.npy"), nnr::Tensor({2, 3}));
  REQUIRE_THROWS_WITH(nnr::load_dataset(dir.file("x.npy")),
                      Catch::Contains("features without labels") && Catch::Contains("'<features>:<labels>'"));
  REQUIRE_THROWS_WITH(nnr::load_dataset("mnist"),
                      Catch::Contains("'mnist': not a known data set; expected one of: 'fashion-mnist'"));
  REQUIRE_THROWS_WITH(nnr::load_dataset(""), Catch::Contains("empty data spec"));
  REQUIRE_THROWS_WITH(nnr::load_dataset("a:b:c"), Catch::Contains("exactly one ':'"));
  REQUIRE_THROWS_WITH(nnr::load_dataset("fashion-mnist:valid"),
                      Catch::Contains("unknown split 'valid': expected 'train' or 'test'"));
  REQUIRE_THROWS_AS(nnr::load_dataset("x.csv:y.npy"), nnr::InvalidArgument);
  REQUIRE_THROWS_WITH(nnr::load_dataset(dir.file("x.npy") + ":" + dir.file("missing.idx")),
                      Catch::Contains("missing.idx: cannot open: No such file or directory"));
}

TEST_CASE("load_dataset reports a feature/label count mismatch naming both files", "[dataset]") {
  TempDir dir;
  nnr::save_idx(dir.file("x.idx"), {3, 2, 2}, std::vector<uint8_t>(12, 0));
  nnr::save_idx(dir.file("y.idx"), {2}, {0, 1});
  REQUIRE_THROWS_WITH(
      nnr::load_dataset(dir.file("x.idx") + ":" + dir.file("y.idx")),
      Catch::Contains("x.idx and " + dir.file("y.idx") + ": wrong dimensions: 3 samples of features but 2 labels"));
}

TEST_CASE("fashion-mnist shortcut names the Debian package's files", "[dataset]") {
  nnr::DatasetFiles train = nnr::fashion_mnist_files("train");
  REQUIRE(train.features == "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
  REQUIRE(train.labels == "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz");
  nnr::DatasetFiles test = nnr::fashion_mnist_files("test", "/data");
  REQUIRE(test.features == "/data/t10k-images-idx3-ubyte.gz");
  REQUIRE(test.labels == "/data/t10k-labels-idx1-ubyte.gz");
}

TEST_CASE("make_dataset checks label range and derives num_classes", "[dataset]") {
  nnr::Dataset d = nnr::make_dataset(nnr::Tensor({3, 2}), {0, 6, 2});
  REQUIRE(d.num_classes == 7);
  REQUIRE(nnr::make_dataset(nnr::Tensor({3, 2}), {0, 6, 2}, 10).num_classes == 10);
  REQUIRE_THROWS_WITH(nnr::make_dataset(nnr::Tensor({3, 2}), {0, 6, 2}, 5, "stream"),
                      Catch::Contains("[dataset] stream: label out of range at sample 1: expected 0..4, got 6"));
  REQUIRE_THROWS_WITH(nnr::make_dataset(nnr::Tensor({3, 2}), {0, -1, 2}), Catch::Contains("got -1"));
  nnr::Dataset unlabelled = nnr::make_dataset(nnr::Tensor({0, 2}), {});
  REQUIRE(unlabelled.size() == 0);
  REQUIRE(unlabelled.num_classes == 0);
}

TEST_CASE("load_features reads CSV without a label column, NPY and IDX images", "[dataset]") {
  TempDir dir;
  nnr::test::write_text(dir.file("x.csv"), "a,b,c\n1,2,3\n");
  REQUIRE(nnr::load_features(dir.file("x.csv")).to_vector() == std::vector<float>{1, 2, 3});
  nnr::save_npy(dir.file("x.npy"), nnr::Tensor({4, 3}));
  REQUIRE(nnr::load_features(dir.file("x.npy")).shape() == nnr::Shape{4, 3});
  nnr::save_idx(dir.file("x-idx3-ubyte"), {2, 2, 2}, std::vector<uint8_t>(8, 0));
  REQUIRE(nnr::load_features(dir.file("x-idx3-ubyte")).shape() == nnr::Shape{2, 1, 2, 2});
  REQUIRE_THROWS_WITH(nnr::load_features(dir.file("x.bin")), Catch::Contains("x.bin: cannot open"));
}

namespace {

// Bytes 0..255 and back, in a shape whose sample size (3 * 5 * 7 = 105) is no multiple of 4 or 8.
std::vector<uint8_t> awkward_bytes(int64_t n, int64_t per) {
  std::vector<uint8_t> v(static_cast<size_t>(n * per));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 37 + i / 255) % 256);
  return v;
}

}  // namespace

TEST_CASE("8-bit features kept as bytes read back as the floats an eager conversion stores", "[dataset]") {
  TempDir dir;
  const int64_t n = 13, per = 3 * 5 * 7;
  const std::vector<uint8_t> values = awkward_bytes(n, per);
  std::vector<uint8_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(static_cast<uint8_t>(i % 4));
  nnr::save_idx(dir.file("x.idx"), {n, 3, 5, 7}, values);
  nnr::save_idx(dir.file("y.idx"), {n}, labels);
  nnr::save_npy_raw(dir.file("x.npy"), "|u1", {n, 3, 5, 7}, values);
  nnr::save_npy_raw(dir.file("y.npy"), "|u1", {n}, labels);
  // What nnr stored before it kept bytes: every value / 255 as a float, computed here by hand.
  std::vector<float> eager;
  for (uint8_t v : values) eager.push_back(static_cast<float>(v) / 255.0f);
  REQUIRE(nnr::load_idx_images(dir.file("x.idx")).to_vector() == eager);
  REQUIRE(nnr::load_npy(dir.file("x.npy")).to_vector() == eager);

  for (const std::string& spec : {dir.file("x.idx") + ":" + dir.file("y.idx"), dir.file("x.npy") + ":" + dir.file("y.npy")}) {
    CAPTURE(spec);
    nnr::Dataset d = nnr::load_dataset(spec);
    REQUIRE(d.stores_bytes());
    REQUIRE_FALSE(d.features.defined());
    REQUIRE(d.has_features());
    REQUIRE(d.size() == n);
    REQUIRE(d.sample_shape() == nnr::Shape{3, 5, 7});
    REQUIRE(d.sample_numel() == per);
    REQUIRE(d.bytes.values.size() == values.size());  // one byte per value
    std::vector<float> row(static_cast<size_t>(per));
    for (int64_t i = 0; i < n; ++i) {
      d.copy_sample(i, row.data());
      REQUIRE(row == std::vector<float>(eager.begin() + i * per, eager.begin() + (i + 1) * per));
    }
    REQUIRE_THROWS_WITH(d.copy_sample(n, row.data()), Catch::Contains("sample 13 is outside [0, 13)"));
    d.decode_to_floats();
    REQUIRE_FALSE(d.stores_bytes());
    REQUIRE(d.features.shape() == nnr::Shape{n, 3, 5, 7});
    REQUIRE(d.features.to_vector() == eager);
    REQUIRE(d.size() == n);
  }
}

TEST_CASE("make_dataset checks byte features", "[dataset]") {
  nnr::ByteFeatures ok{{2, 3}, std::vector<uint8_t>(6, 7), 255.0f};
  nnr::Dataset d = nnr::make_dataset(ok, {1, 0});
  REQUIRE(d.num_classes == 2);
  REQUIRE(d.size() == 2);
  REQUIRE_THROWS_WITH(nnr::make_dataset(nnr::ByteFeatures{{2, 4}, std::vector<uint8_t>(6), 255.0f}, {}),
                      Catch::Contains("6 values for shape"));
  REQUIRE_THROWS_WITH(nnr::make_dataset(nnr::ByteFeatures{{}, {}, 255.0f}, {}),
                      Catch::Contains("expected byte features of shape [N, ...]"));
  REQUIRE_THROWS_WITH(nnr::make_dataset(nnr::ByteFeatures{{2, 3}, std::vector<uint8_t>(6), 0.0f}, {}),
                      Catch::Contains("positive divisor"));
  REQUIRE_THROWS_WITH(nnr::make_dataset(ok, {0, 1, 2}, 0, "bytes"), Catch::Contains("2 samples of features but 3 labels"));
  nnr::Dataset none;
  REQUIRE_FALSE(none.has_features());
  REQUIRE(none.size() == 0);
  REQUIRE(none.sample_numel() == 0);
}
