#include "apps/trainer/stream.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "engine/core/error.h"
#include "tests/engine/data/temp_dir.h"

namespace {

constexpr int64_t kPixels = 16;          // samples are [1, 4, 4]
constexpr int64_t kTestIndexBase = 1000; // test sample i is numbered 1000 + i

// Sample i (numbered `first + i`) has pixel k equal to number * 16 + k and label number % 10, so any
// row, however permuted, tells which sample it is (its smallest pixel / 16) and its true label.
nnr::Dataset numbered(int64_t n, int64_t first = 0) {
  nnr::Tensor x({n, 1, 4, 4});
  std::vector<int32_t> y;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < kPixels; ++k) x[i * kPixels + k] = static_cast<float>((first + i) * kPixels + k);
    y.push_back(static_cast<int32_t>((first + i) % 10));
  }
  return nnr::make_dataset(std::move(x), std::move(y), 10);
}

nnr::Dataset numbered_test(int64_t n) { return numbered(n, kTestIndexBase); }

int64_t number_of(const nnr::Dataset& d, int64_t row) {
  const float* p = d.features.data() + row * kPixels;
  return static_cast<int64_t>(*std::min_element(p, p + kPixels)) / kPixels;
}

std::vector<int64_t> numbers(const nnr::Dataset& d) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < d.size(); ++i) out.push_back(number_of(d, i));
  return out;
}

std::set<int32_t> label_set(const nnr::Dataset& d) { return std::set<int32_t>(d.labels.begin(), d.labels.end()); }

// The classes of a chunk's train and validation samples.
std::set<int32_t> dealt_classes(const nnr::StreamChunk& c) {
  std::set<int32_t> classes = label_set(c.train);
  for (int32_t y : c.validation.labels) classes.insert(y);
  return classes;
}

nnr::StreamOptions options_for(const std::string& scenario, int chunks) {
  nnr::StreamOptions o;
  o.scenario = scenario;
  o.chunks = chunks;
  o.seed = 11;
  return o;
}

// Everything a chunk holds, flattened, to compare whole streams.
std::vector<float> contents(const std::vector<nnr::StreamChunk>& stream) {
  std::vector<float> out;
  for (const nnr::StreamChunk& c : stream)
    for (const nnr::Dataset* d : {&c.train, &c.validation, &c.test}) {
      const std::vector<float> f = d->features.to_vector();
      out.insert(out.end(), f.begin(), f.end());
      out.insert(out.end(), d->labels.begin(), d->labels.end());
    }
  return out;
}

// The fraction of a chunk's train and validation samples whose class is in `classes`.
double fraction_in(const nnr::StreamChunk& c, const std::vector<int32_t>& classes) {
  int64_t in = 0;
  for (const nnr::Dataset* d : {&c.train, &c.validation})
    for (int64_t i = 0; i < d->size(); ++i)
      in += std::count(classes.begin(), classes.end(), number_of(*d, i) % 10) > 0 ? 1 : 0;
  return static_cast<double>(in) / static_cast<double>(c.train.size() + c.validation.size());
}

}  // namespace

TEST_CASE("split: consecutive class groups, each chunk all its classes' train and test samples", "[stream]") {
  const nnr::Dataset train = numbered(200), test = numbered_test(100);
  const auto stream = nnr::make_stream(train, test, options_for("split", 5));
  REQUIRE(stream.size() == 5);
  for (int t = 0; t < 5; ++t) {
    const nnr::StreamChunk& c = stream[t];
    const int32_t a = 2 * t, b = 2 * t + 1;
    CHECK(c.name == "classes " + std::to_string(a) + "-" + std::to_string(b));
    CHECK(c.classes == std::vector<int32_t>{a, b});
    for (const nnr::Dataset* d : {&c.train, &c.validation, &c.test}) {
      CHECK(d->num_classes == 10);  // single head
      CHECK(d->sample_shape() == nnr::Shape{1, 4, 4});
      for (int32_t y : d->labels) CHECK((y == a || y == b));
    }
    CHECK(c.validation.size() == 4);  // 10% of the 40 samples of two classes
    CHECK(c.train.size() == 36);
    CHECK(c.test.size() == 20);

    std::vector<int64_t> seen = numbers(c.train), validation = numbers(c.validation), expected;
    seen.insert(seen.end(), validation.begin(), validation.end());
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < 200; ++i)
      if (i % 10 == a || i % 10 == b) expected.push_back(i);
    CHECK(seen == expected);  // disjoint, and together the whole chunk
    std::vector<int64_t> test_expected;
    for (int64_t i = 0; i < 100; ++i)
      if (i % 10 == a || i % 10 == b) test_expected.push_back(kTestIndexBase + i);
    CHECK(numbers(c.test) == test_expected);
  }

  std::vector<std::string> names;
  for (const auto& c : nnr::make_stream(train, test, options_for("split", 4))) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"classes 0-2", "classes 3-5", "classes 6-7", "classes 8-9"});
  const auto singles = nnr::make_stream(train, test, options_for("split", 10));
  CHECK(singles[3].name == "class 3");
  CHECK(singles[3].classes == std::vector<int32_t>{3});
}

TEST_CASE("validation split, train_samples and test_samples sizes", "[stream]") {
  const nnr::Dataset train = numbered(200), test = numbered_test(100);
  nnr::StreamOptions o = options_for("permuted", 3);
  o.train_samples = 50;
  o.validation_fraction = 0.2;
  o.test_samples = 30;
  for (const auto& c : nnr::make_stream(train, test, o)) {
    CHECK(c.train.size() == 40);
    CHECK(c.validation.size() == 10);
    CHECK(c.test.size() == 30);
    std::set<int64_t> all;
    for (const nnr::Dataset* d : {&c.train, &c.validation})
      for (int64_t n : numbers(*d)) CHECK(all.insert(n).second);
    CHECK(all.size() == 50);
    const std::vector<int64_t> test_numbers = numbers(c.test);
    CHECK(std::set<int64_t>(test_numbers.begin(), test_numbers.end()).size() == 30);
  }

  o.validation_fraction = 0.0;
  CHECK(nnr::make_stream(train, test, o)[0].validation.size() == 0);
  CHECK(nnr::make_stream(train, test, o)[0].train.size() == 50);
  o.validation_fraction = 0.001;  // rounds to 0: still one validation sample
  CHECK(nnr::make_stream(train, test, o)[0].validation.size() == 1);
  o.validation_fraction = 0.9;
  CHECK(nnr::make_stream(train, test, o)[0].validation.size() == 45);
}

TEST_CASE("permuted: chunk 0 is the identity, chunk t one permutation for train, validation and test", "[stream]") {
  const nnr::Dataset train = numbered(60), test = numbered_test(30);
  const auto stream = nnr::make_stream(train, test, options_for("permuted", 3));
  REQUIRE(stream.size() == 3);
  CHECK(stream[1].name == "permutation 1");
  for (const nnr::Dataset* d : {&stream[0].train, &stream[0].validation, &stream[0].test})
    for (int64_t i = 0; i < d->size(); ++i)
      for (int64_t k = 0; k < kPixels; ++k) REQUIRE(d->features[i * kPixels + k] == number_of(*d, i) * kPixels + k);

  std::vector<std::vector<int64_t>> perms;
  for (int t = 1; t < 3; ++t) {
    const nnr::Dataset& first = stream[t].train;
    std::vector<int64_t> perm;  // pixel k of a permuted sample is pixel perm[k] of the original
    for (int64_t k = 0; k < kPixels; ++k)
      perm.push_back(static_cast<int64_t>(first.features[k]) - number_of(first, 0) * kPixels);
    std::vector<int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t k = 0; k < kPixels; ++k) REQUIRE(sorted[k] == k);
    for (const nnr::Dataset* d : {&stream[t].train, &stream[t].validation, &stream[t].test})
      for (int64_t i = 0; i < d->size(); ++i) {
        for (int64_t k = 0; k < kPixels; ++k)
          REQUIRE(d->features[i * kPixels + k] == number_of(*d, i) * kPixels + perm[k]);
        REQUIRE(d->labels[i] == number_of(*d, i) % 10);
      }
    perms.push_back(perm);
  }
  std::vector<int64_t> identity(kPixels);
  for (int64_t k = 0; k < kPixels; ++k) identity[k] = k;
  CHECK(perms[0] != identity);
  CHECK(perms[0] != perms[1]);
}

TEST_CASE("rotated: quarter turns move pixels exactly, 0 degrees is the identity, bilinear in between", "[stream]") {
  // Two samples of two 3x3 channels, pixel values 1..9 (channel 0) and 11..19 (channel 1), plus 100 per sample.
  auto images = [](int64_t n) {
    nnr::Tensor x({n, 2, 3, 3});
    std::vector<int32_t> y;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t ch = 0; ch < 2; ++ch)
        for (int64_t p = 0; p < 9; ++p) x[(i * 2 + ch) * 9 + p] = static_cast<float>(100 * i + 10 * ch + p + 1);
      y.push_back(static_cast<int32_t>(i % 2));
    }
    return nnr::make_dataset(std::move(x), std::move(y));
  };
  const nnr::Dataset train = images(4), test = images(2);
  nnr::StreamOptions o = options_for("rotated", 3);
  o.rotation_step = 90;
  o.validation_fraction = 0.0;
  const auto stream = nnr::make_stream(train, test, o);
  REQUIRE(stream.size() == 3);
  CHECK(stream[0].name == "rotation 0");
  CHECK(stream[1].name == "rotation 90");
  CHECK(stream[2].name == "rotation 180");
  CHECK(stream[0].train.features.to_vector() == train.features.to_vector());
  CHECK(stream[0].test.features.to_vector() == test.features.to_vector());

  // Counter-clockwise as displayed: the right column becomes the top row.
  const std::vector<float> quarter{3, 6, 9, 2, 5, 8, 1, 4, 7, 13, 16, 19, 12, 15, 18, 11, 14, 17};
  const std::vector<float> half{9, 8, 7, 6, 5, 4, 3, 2, 1, 19, 18, 17, 16, 15, 14, 13, 12, 11};
  for (int t = 1; t < 3; ++t)
    for (const nnr::Dataset* d : {&stream[t].train, &stream[t].test})
      for (int64_t i = 0; i < d->size(); ++i) {
        const float base = d->features[i * 18 + 4] - 5;  // the centre pixel stays put
        for (int64_t p = 0; p < 18; ++p) REQUIRE(d->features[i * 18 + p] == base + (t == 1 ? quarter : half)[p]);
      }

  o.rotation_step = 45;
  o.chunks = 2;
  const nnr::Dataset turned = std::move(nnr::make_stream(train, test, o)[1].test);
  // Output (0, 0) reads the source point (1, 1 - sqrt 2): between pixel 2 and the zero outside.
  CHECK(turned.features[0] == Approx(2.0 * (2.0 - std::sqrt(2.0))));
  CHECK(turned.features[4] == Approx(5.0f));

  std::vector<std::string> names;
  for (const auto& c : nnr::make_stream(train, test, options_for("rotated", 4))) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"rotation 0", "rotation 45", "rotation 90", "rotation 135"});

  nnr::Dataset flat = nnr::make_dataset(nnr::Tensor({4, 16}), {0, 1, 0, 1});
  CHECK_THROWS_WITH(nnr::make_stream(flat, flat, options_for("rotated", 2)),
                    Catch::Contains("[stream] rotated: needs images of shape [N, C, H, W], got features [4, 16]"));
}

TEST_CASE("drift: disjoint chunks whose class priors shift, late classes arriving part-way", "[stream]") {
  const nnr::Dataset train = numbered(1000), test = numbered_test(500);
  const int chunks = 5;
  const auto stream = nnr::make_stream(train, test, options_for("drift", chunks));
  REQUIRE(stream.size() == chunks);
  std::set<int64_t> dealt;
  std::set<int32_t> all_classes;
  for (int t = 0; t < chunks; ++t) {
    const nnr::StreamChunk& c = stream[t];
    CHECK(c.name == "drift " + std::to_string(t));
    CHECK(c.train.size() + c.validation.size() == 200);  // 1000 samples dealt into 5 equal chunks
    CHECK(c.validation.size() == 20);
    for (const nnr::Dataset* d : {&c.train, &c.validation})
      for (int64_t n : numbers(*d)) CHECK(dealt.insert(n).second);  // a sample goes to one chunk only
    CHECK(c.test.size() == 100);  // 500 test samples / 5 chunks
    const std::vector<int64_t> test_numbers = numbers(c.test);
    CHECK(std::set<int64_t>(test_numbers.begin(), test_numbers.end()).size() == test_numbers.size());
    for (int32_t y : c.test.labels) CHECK(dealt_classes(c).count(y) == 1);  // the chunk's class mix
    all_classes.insert(c.classes.begin(), c.classes.end());
  }
  CHECK(dealt.size() == 1000);
  CHECK(all_classes.size() == 10);

  const std::vector<int32_t> early = stream[0].classes;
  CHECK(early.size() == 5);  // initial_classes 0: half of them
  int32_t late_class = -1;
  for (int32_t c = 0; c < 10 && late_class < 0; ++c)
    if (std::find(early.begin(), early.end(), c) == early.end()) late_class = c;
  CHECK(label_set(stream[0].test).count(late_class) == 0);
  CHECK(label_set(stream[chunks - 1].train).count(late_class) == 1);
  for (int t = 1; t < chunks; ++t) CHECK(fraction_in(stream[t], early) < fraction_in(stream[t - 1], early));
  CHECK(fraction_in(stream[chunks - 1], early) < 0.5);

  nnr::StreamOptions o = options_for("drift", chunks);
  o.initial_classes = 2;
  CHECK(nnr::make_stream(train, test, o)[0].classes.size() == 2);
  o.train_samples = 100;
  for (const auto& c : nnr::make_stream(train, test, o)) CHECK(c.train.size() + c.validation.size() == 100);
  o.train_samples = 300;
  CHECK_THROWS_WITH(nnr::make_stream(train, test, o),
                    Catch::Contains("[stream] drift: 5 chunks of 300 training samples need 1500 samples, "
                                    "the training set has 1000"));
}

TEST_CASE("drift label noise flips the requested fraction of training labels only", "[stream]") {
  const nnr::Dataset train = numbered(1000), test = numbered_test(500);
  nnr::StreamOptions o = options_for("drift", 4);
  o.label_noise = 0.2;
  const auto noisy = nnr::make_stream(train, test, o);
  o.label_noise = 0.0;
  const auto clean = nnr::make_stream(train, test, o);
  for (size_t t = 0; t < noisy.size(); ++t) {
    const nnr::StreamChunk& c = noisy[t];
    CHECK(c.train.features.to_vector() == clean[t].train.features.to_vector());  // same samples
    int64_t flipped = 0;
    for (int64_t i = 0; i < c.train.size(); ++i)
      if (c.train.labels[i] != number_of(c.train, i) % 10) {
        ++flipped;
        CHECK(dealt_classes(clean[t]).count(c.train.labels[i]) == 1);  // another class of the chunk
      }
    CHECK(flipped == std::llround(0.2 * static_cast<double>(c.train.size())));
    for (const nnr::Dataset* d : {&c.validation, &c.test})
      for (int64_t i = 0; i < d->size(); ++i) CHECK(d->labels[i] == number_of(*d, i) % 10);
  }
}

TEST_CASE("files: each spec a chunk, test part from @TEST or the last holdout of the file", "[stream]") {
  nnr::test::TempDir dir;
  std::string a, b, b_test;
  for (int i = 0; i < 10; ++i) a += std::to_string(i % 3) + "," + std::to_string(i) + ",0,0\n";
  for (int i = 0; i < 6; ++i) b += std::to_string(i % 5) + "," + std::to_string(100 + i) + ",1,1\n";
  for (int i = 0; i < 4; ++i) b_test += std::to_string(i % 2) + "," + std::to_string(200 + i) + ",2,2\n";
  nnr::test::write_text(dir.file("a.csv"), a);
  nnr::test::write_text(dir.file("b.csv"), b);
  nnr::test::write_text(dir.file("b_test.csv"), b_test);
  nnr::test::write_text(dir.file("narrow.csv"), "0,1,2\n1,3,4\n0,5,6\n");

  nnr::StreamOptions o;
  o.scenario = "files";
  o.validation_fraction = 0.0;
  o.chunk_specs = {dir.file("a.csv"), dir.file("b.csv") + "@" + dir.file("b_test.csv")};
  const auto stream = nnr::make_file_stream(o);
  REQUIRE(stream.size() == 2);
  CHECK(stream[0].name == dir.file("a.csv"));
  CHECK(stream[1].name == o.chunk_specs[1]);
  auto first_column = [](const nnr::Dataset& d) {
    std::vector<float> v;
    for (int64_t i = 0; i < d.size(); ++i) v.push_back(d.features[i * 3]);
    return v;
  };
  CHECK(first_column(stream[0].train) == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(first_column(stream[0].test) == std::vector<float>{8, 9});  // holdout 0.2, in file order
  CHECK(first_column(stream[1].train) == std::vector<float>{100, 101, 102, 103, 104, 105});
  CHECK(first_column(stream[1].test) == std::vector<float>{200, 201, 202, 203});
  CHECK(stream[0].classes == std::vector<int32_t>{0, 1, 2});
  for (const auto& c : stream)
    for (const nnr::Dataset* d : {&c.train, &c.validation, &c.test}) CHECK(d->num_classes == 5);  // the largest

  o.validation_fraction = 0.25;
  const auto split = nnr::make_file_stream(o);
  CHECK(split[0].validation.size() == 2);
  CHECK(split[0].train.size() == 6);

  o.chunk_specs = {dir.file("a.csv"), dir.file("narrow.csv")};
  CHECK_THROWS_WITH(nnr::make_file_stream(o), Catch::Contains("[stream] chunk spec '" + dir.file("narrow.csv") +
                                                              "': samples are [2] but the first chunk's are [3]"));
  o.chunk_specs = {dir.file("a.csv") + "@" + dir.file("narrow.csv")};
  CHECK_THROWS_WITH(nnr::make_file_stream(o), Catch::Contains("test samples are [2] but training samples are [3]"));
  o.chunk_specs = {dir.file("a.csv") + "@"};
  CHECK_THROWS_WITH(nnr::make_file_stream(o), Catch::Contains("expected TRAIN or TRAIN@TEST"));
  o.chunk_specs = {};
  CHECK_THROWS_WITH(nnr::make_file_stream(o), Catch::Contains("[stream] files: no chunk specs given"));
  o.chunk_specs = {dir.file("a.csv")};
  o.holdout = 1.0;
  CHECK_THROWS_WITH(nnr::make_file_stream(o), Catch::Contains("[stream] holdout must be in (0, 1), got 1"));
}

TEST_CASE("bad options and data are refused with a message naming them", "[stream]") {
  const nnr::Dataset train = numbered(200), test = numbered_test(100);
  auto fails_with = [&](nnr::StreamOptions o, const std::string& message, const nnr::Dataset* test_set = nullptr) {
    CHECK_THROWS_AS(nnr::make_stream(train, test_set ? *test_set : test, o), nnr::InvalidArgument);
    CHECK_THROWS_WITH(nnr::make_stream(train, test_set ? *test_set : test, o), Catch::Contains(message));
  };
  nnr::StreamOptions o = options_for("split", 5);
  o.validation_fraction = 0.95;
  fails_with(o, "[stream] validation_fraction must be in [0, 0.9], got 0.95");
  o.validation_fraction = -0.1;
  fails_with(o, "[stream] validation_fraction must be in [0, 0.9], got -0.1");
  fails_with(options_for("split", 11), "[stream] split: 11 chunks but only 10 classes");
  fails_with(options_for("split", 0), "[stream] chunks must be at least 1, got 0");
  fails_with(options_for("shuffled", 5),
             "[stream] unknown scenario 'shuffled': expected one of split, permuted, rotated, drift, files");
  fails_with(options_for("files", 5), "use make_file_stream");
  o = options_for("drift", 5);
  o.label_noise = 1.0;
  fails_with(o, "[stream] label_noise must be in [0, 1), got 1");
  o = options_for("permuted", 5);
  o.train_samples = 1;
  fails_with(o, "[stream] chunk 'permutation 0' has 1 training samples; a chunk needs at least 2");

  const nnr::Dataset flat = nnr::make_dataset(nnr::Tensor({4, 16}), {0, 1, 0, 1});
  fails_with(options_for("split", 2), "[stream] train samples are [1, 4, 4] but test samples are [16]", &flat);
  const nnr::Dataset unlabelled = nnr::make_dataset(nnr::Tensor({4, 1, 4, 4}), {});
  fails_with(options_for("split", 2), "[stream] needs labelled train and test sets", &unlabelled);
}

TEST_CASE("the same seed gives the same chunks, another seed other chunks", "[stream]") {
  const nnr::Dataset train = numbered(300), test = numbered_test(100);
  for (const std::string scenario : {"split", "permuted", "rotated", "drift"}) {
    INFO(scenario);
    nnr::StreamOptions o = options_for(scenario, 3);
    o.train_samples = scenario == "drift" ? 0 : 60;
    o.test_samples = 40;
    o.label_noise = 0.1;
    o.rotation_step = 30;
    const std::vector<float> first = contents(nnr::make_stream(train, test, o));
    CHECK(contents(nnr::make_stream(train, test, o)) == first);
    o.seed = 12;
    CHECK(contents(nnr::make_stream(train, test, o)) != first);
  }
  CHECK(nnr::stream_scenarios() == std::vector<std::string>{"split", "permuted", "rotated", "drift", "files"});
}

TEST_CASE("a source kept as bytes (8-bit images) gives the same streams as its floats", "[stream]") {
  // 40 + 20 samples of [1, 4, 4] bytes; every scenario's chunks must equal those cut from the floats.
  auto bytes_of = [](int64_t n, int64_t first) {
    nnr::ByteFeatures b{{n, 1, 4, 4}, std::vector<uint8_t>(static_cast<size_t>(n * kPixels)), 255.0f};
    std::vector<int32_t> y;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < kPixels; ++k) b.values[static_cast<size_t>(i * kPixels + k)] = static_cast<uint8_t>((first + i) * 7 + k * 13);
      y.push_back(static_cast<int32_t>((first + i) % 10));
    }
    return std::make_pair(b, y);
  };
  const auto [train_bytes, train_y] = bytes_of(40, 0);
  const auto [test_bytes, test_y] = bytes_of(20, 100);
  const nnr::Dataset train = nnr::make_dataset(train_bytes, train_y, 10), test = nnr::make_dataset(test_bytes, test_y, 10);
  const nnr::Dataset train_f = nnr::make_dataset(nnr::decode_bytes(train_bytes), train_y, 10);
  const nnr::Dataset test_f = nnr::make_dataset(nnr::decode_bytes(test_bytes), test_y, 10);
  REQUIRE(train.stores_bytes());
  for (const std::string scenario : {"split", "permuted", "rotated", "drift"}) {
    CAPTURE(scenario);
    const auto from_bytes = nnr::make_stream(train, test, options_for(scenario, 2));
    const auto from_floats = nnr::make_stream(train_f, test_f, options_for(scenario, 2));
    REQUIRE(from_bytes.size() == from_floats.size());
    CHECK(contents(from_bytes) == contents(from_floats));
  }
}
