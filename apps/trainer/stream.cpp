#include "apps/trainer/stream.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>
#include <utility>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/data/batcher.h"

namespace nnr {
namespace {

// One random stream per purpose, so that changing one option (say the validation fraction) leaves
// the permutations, the drift dealing and the other draws as they were.
constexpr uint64_t kSubsetStream = 0x7375627365742d31ULL;
constexpr uint64_t kValidationStream = 0x76616c69642d3032ULL;
constexpr uint64_t kTestStream = 0x746573742d2d3033ULL;
constexpr uint64_t kNoiseStream = 0x6e6f6973652d3034ULL;
constexpr uint64_t kPermutationStream = 0x7065726d2d2d3035ULL;
constexpr uint64_t kDriftOrderStream = 0x6f726465722d3036ULL;
constexpr uint64_t kDriftDealStream = 0x6465616c2d2d3037ULL;

constexpr double kPi = 3.14159265358979323846;

[[noreturn]] void fail(const std::string& message) { throw InvalidArgument("[stream] " + message); }

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Writes one transformed sample; `out` has as many elements as `in`.
using SampleTransform = std::function<void(const float* in, float* out)>;

// A chunk before its data is copied: the rows of the train and test sources it holds and how each
// of their samples is transformed.
struct ChunkPlan {
  std::string name;
  std::vector<int64_t> train_rows;
  std::vector<int64_t> test_rows;
  SampleTransform transform;  // empty: the samples as they are
};

struct StreamRngs {
  explicit StreamRngs(uint64_t seed)
      : subset(seed ^ kSubsetStream), validation(seed ^ kValidationStream), test(seed ^ kTestStream),
        noise(seed ^ kNoiseStream) {}
  Rng subset, validation, test, noise;
};

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), int64_t{0});
  return rows;
}

// `count` of `rows` drawn at random (all of them when there are no more), in their original order.
std::vector<int64_t> random_subset(std::vector<int64_t> rows, int64_t count, Rng& rng) {
  if (count >= static_cast<int64_t>(rows.size())) return rows;
  shuffle_indices(rows, rng);
  rows.resize(static_cast<size_t>(count));
  std::sort(rows.begin(), rows.end());
  return rows;
}

std::vector<int32_t> present_classes(const std::vector<int32_t>& labels) {
  const std::set<int32_t> present(labels.begin(), labels.end());
  return std::vector<int32_t>(present.begin(), present.end());
}

// Copies rows of `source` as floats (also from a source kept as bytes) into the chunk's tensor,
// each transformed in place through one row of scratch.
Dataset gather(const Dataset& source, const std::vector<int64_t>& rows, const SampleTransform& transform,
               int32_t num_classes, const std::string& what) {
  if (!source.stores_bytes()) require_cpu(source.features, "stream");
  std::vector<int32_t> labels(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) labels[i] = source.labels[static_cast<size_t>(rows[i])];
  Tensor features = gather_rows(source, rows);  // floats, also from a source kept as bytes
  if (transform) {
    const int64_t per = source.sample_numel();
    std::vector<float> in(static_cast<size_t>(per));
    for (size_t i = 0; i < rows.size(); ++i) {
      float* row = features.data() + static_cast<int64_t>(i) * per;
      std::copy(row, row + per, in.begin());
      transform(in.data(), row);
    }
  }
  return make_dataset(std::move(features), std::move(labels), num_classes, what);
}

// Flips round(fraction * n) labels, chosen at random, each to another of `classes` (uniformly);
// labels of a chunk with a single class stay as they are.
void flip_labels(std::vector<int32_t>& labels, const std::vector<int32_t>& classes, double fraction, Rng& rng) {
  if (fraction <= 0.0 || classes.size() < 2) return;
  std::vector<int64_t> order = all_rows(static_cast<int64_t>(labels.size()));
  shuffle_indices(order, rng);
  const size_t flips = static_cast<size_t>(std::llround(fraction * static_cast<double>(labels.size())));
  for (size_t i = 0; i < flips; ++i) {
    int32_t& label = labels[static_cast<size_t>(order[i])];
    const size_t own = static_cast<size_t>(std::lower_bound(classes.begin(), classes.end(), label) - classes.begin());
    size_t pick = static_cast<size_t>(rng.below(classes.size() - 1));
    if (pick >= own) ++pick;  // skip the true class
    label = classes[pick];
  }
}

// The shared end of every scenario: the train_samples subset, the validation split, the test cap,
// label noise (drift), then the copies.
StreamChunk finish_chunk(ChunkPlan plan, const Dataset& train_source, const Dataset& test_source,
                         int32_t num_classes, const StreamOptions& options, double label_noise, StreamRngs& rngs) {
  std::vector<int64_t> rows = options.train_samples > 0
                                  ? random_subset(std::move(plan.train_rows), options.train_samples, rngs.subset)
                                  : std::move(plan.train_rows);
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n < 2)
    fail("chunk '" + plan.name + "' has " + std::to_string(n) +
         " training samples; a chunk needs at least 2 (training and validation)");
  const int64_t validation_count =
      options.validation_fraction > 0.0
          ? std::clamp<int64_t>(std::llround(options.validation_fraction * static_cast<double>(n)), 1, n - 1)
          : 0;
  shuffle_indices(rows, rngs.validation);
  std::vector<int64_t> validation_rows(rows.begin(), rows.begin() + validation_count);
  std::vector<int64_t> train_rows(rows.begin() + validation_count, rows.end());
  std::sort(validation_rows.begin(), validation_rows.end());
  std::sort(train_rows.begin(), train_rows.end());
  const std::vector<int64_t> test_rows = options.test_samples > 0
                                             ? random_subset(std::move(plan.test_rows), options.test_samples, rngs.test)
                                             : std::move(plan.test_rows);
  if (test_rows.empty()) fail("chunk '" + plan.name + "' has no test samples");

  StreamChunk chunk;
  chunk.name = plan.name;
  const std::string where = "stream chunk '" + plan.name + "' ";
  chunk.train = gather(train_source, train_rows, plan.transform, num_classes, where + "train");
  chunk.validation = gather(train_source, validation_rows, plan.transform, num_classes, where + "validation");
  chunk.test = gather(test_source, test_rows, plan.transform, num_classes, where + "test");
  if (label_noise > 0.0) {
    std::vector<int32_t> dealt = chunk.train.labels;
    dealt.insert(dealt.end(), chunk.validation.labels.begin(), chunk.validation.labels.end());
    flip_labels(chunk.train.labels, present_classes(dealt), label_noise, rngs.noise);
  }
  chunk.classes = present_classes(chunk.train.labels);
  return chunk;
}

// ---- split ----

std::vector<ChunkPlan> split_plans(const Dataset& train, const Dataset& test, int32_t num_classes, int chunks) {
  if (chunks > num_classes)
    fail("split: " + std::to_string(chunks) + " chunks but only " + std::to_string(num_classes) +
         " classes; a chunk needs at least one class");
  // Consecutive groups; with uneven counts the first groups take one class more.
  std::vector<size_t> chunk_of_class(static_cast<size_t>(num_classes));
  std::vector<ChunkPlan> plans(static_cast<size_t>(chunks));
  const int32_t base = num_classes / chunks, extra = num_classes % chunks;
  int32_t first = 0;
  for (int t = 0; t < chunks; ++t) {
    const int32_t count = base + (t < extra ? 1 : 0), last = first + count - 1;
    for (int32_t c = first; c <= last; ++c) chunk_of_class[static_cast<size_t>(c)] = static_cast<size_t>(t);
    plans[static_cast<size_t>(t)].name =
        count == 1 ? "class " + std::to_string(first) : "classes " + std::to_string(first) + "-" + std::to_string(last);
    first = last + 1;
  }
  for (int64_t i = 0; i < train.size(); ++i)
    plans[chunk_of_class[static_cast<size_t>(train.labels[static_cast<size_t>(i)])]].train_rows.push_back(i);
  for (int64_t i = 0; i < test.size(); ++i)
    plans[chunk_of_class[static_cast<size_t>(test.labels[static_cast<size_t>(i)])]].test_rows.push_back(i);
  return plans;
}

// ---- permuted ----

std::vector<ChunkPlan> permuted_plans(const Dataset& train, const Dataset& test, int chunks, uint64_t seed) {
  const int64_t per = shape_numel(train.sample_shape());
  Rng rng(seed ^ kPermutationStream);
  std::vector<ChunkPlan> plans;
  for (int t = 0; t < chunks; ++t) {
    ChunkPlan plan{"permutation " + std::to_string(t), all_rows(train.size()), all_rows(test.size()), {}};
    if (t > 0) {
      std::vector<int64_t> perm = all_rows(per);
      shuffle_indices(perm, rng);
      plan.transform = [perm = std::move(perm)](const float* in, float* out) {
        for (size_t k = 0; k < perm.size(); ++k) out[k] = in[perm[k]];
      };
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

// ---- rotated ----

// cos and sin of `degrees`, exact at multiples of 90 so that quarter turns move pixels without blur.
std::pair<double, double> cos_sin_degrees(double degrees) {
  const double quarters = degrees / 90.0;
  if (quarters == std::round(quarters)) {
    switch (((static_cast<int64_t>(quarters) % 4) + 4) % 4) {
      case 0: return {1.0, 0.0};
      case 1: return {0.0, 1.0};
      case 2: return {-1.0, 0.0};
      default: return {0.0, -1.0};
    }
  }
  const double radians = degrees * kPi / 180.0;
  return {std::cos(radians), std::sin(radians)};
}

// Rotation of [C, H, W] images by `degrees` counter-clockwise as displayed (row 0 at the top, as
// torchvision's rotate) about the image centre ((W-1)/2, (H-1)/2). Output pixel (y, x) reads the
// source point (x', y') = R(-degrees) (x - cx, y - cy) + centre, interpolated bilinearly from its
// four neighbours; neighbours outside the image count as 0. The taps are computed once per chunk.
SampleTransform rotation(int64_t channels, int64_t height, int64_t width, double degrees) {
  const auto [c, s] = cos_sin_degrees(degrees);
  const double cx = static_cast<double>(width - 1) / 2.0, cy = static_cast<double>(height - 1) / 2.0;
  const int64_t pixels = height * width;
  std::vector<int64_t> tap_pixel(static_cast<size_t>(4 * pixels), -1);  // -1: no tap (outside, or weight 0)
  std::vector<float> tap_weight(static_cast<size_t>(4 * pixels), 0.0f);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const double dx = static_cast<double>(x) - cx, dy = static_cast<double>(y) - cy;
      const double sx = c * dx - s * dy + cx, sy = s * dx + c * dy + cy;
      const double x0 = std::floor(sx), y0 = std::floor(sy), fx = sx - x0, fy = sy - y0;
      const double weights[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
      for (int k = 0; k < 4; ++k) {
        const int64_t tx = static_cast<int64_t>(x0) + (k & 1), ty = static_cast<int64_t>(y0) + (k >> 1);
        if (weights[k] == 0.0 || tx < 0 || tx >= width || ty < 0 || ty >= height) continue;
        const size_t slot = static_cast<size_t>(4 * (y * width + x) + k);
        tap_pixel[slot] = ty * width + tx;
        tap_weight[slot] = static_cast<float>(weights[k]);
      }
    }
  return [channels, pixels, tap_pixel = std::move(tap_pixel), tap_weight = std::move(tap_weight)](const float* in,
                                                                                                  float* out) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      const float* plane = in + ch * pixels;
      for (int64_t p = 0; p < pixels; ++p) {
        float value = 0.0f;
        for (size_t slot = static_cast<size_t>(4 * p); slot < static_cast<size_t>(4 * p + 4); ++slot)
          if (tap_pixel[slot] >= 0) value += tap_weight[slot] * plane[tap_pixel[slot]];
        out[ch * pixels + p] = value;
      }
    }
  };
}

std::vector<ChunkPlan> rotated_plans(const Dataset& train, const Dataset& test, int chunks, double step) {
  const Shape image = train.sample_shape();
  if (image.size() != 3) {
    Shape shape{train.size()};
    shape.insert(shape.end(), image.begin(), image.end());
    fail("rotated: needs images of shape [N, C, H, W], got features " + shape_to_string(shape));
  }
  const double degrees_per_chunk = step != 0.0 ? step : 180.0 / chunks;
  std::vector<ChunkPlan> plans;
  for (int t = 0; t < chunks; ++t) {
    const double degrees = t * degrees_per_chunk;
    ChunkPlan plan{"rotation " + format_number(degrees), all_rows(train.size()), all_rows(test.size()), {}};
    if (t > 0) plan.transform = rotation(image[0], image[1], image[2], degrees);
    plans.push_back(std::move(plan));
  }
  return plans;
}

// ---- drift ----

// Class priors of the drift stream, T chunks and C classes. The classes in a seeded order
// o_0 .. o_{C-1}: the first K = initial_classes (default max(1, C/2)) are there from chunk 0; late
// class j = 0 .. C-K-1 (o_{K+j}) arrives at chunk a = min(T-1, 1 + floor(j S / (C-K))),
// S = max(1, round(2T/3)), so arrivals spread over the first ~2/3 of the stream. The class at
// position k of the order has weight
//   w_t = 0                                        for t < a (not arrived yet)
//   w_t = 0.1 + exp(-((t - mu_k) / sigma)^2 / 2)   after, mu_k = (T-1) k / (C-1), sigma = max(1, T/4)
// a floor plus a Gaussian bump whose centres sweep across the stream in class order, so early
// classes fade as late ones rise. p_t(c) = w_t(c) / sum_c w_t(c). Chunk t is dealt N/T training
// samples (the first N mod T chunks one more; train_samples each when given) by deal().
class DriftPriors {
 public:
  DriftPriors(int32_t classes, int chunks, int initial_classes, uint64_t seed)
      : arrival_(static_cast<size_t>(classes)), centre_(static_cast<size_t>(classes)), chunks_(chunks) {
    std::vector<int64_t> order = all_rows(classes);
    Rng rng(seed ^ kDriftOrderStream);
    shuffle_indices(order, rng);
    const int32_t initial = initial_classes > 0 ? initial_classes : std::max(1, classes / 2);
    const int32_t late = classes - initial;
    const int64_t span = std::max<int64_t>(1, std::llround(2.0 * chunks / 3.0));
    for (int32_t k = 0; k < classes; ++k) {
      const size_t c = static_cast<size_t>(order[static_cast<size_t>(k)]);
      arrival_[c] = k < initial ? 0 : std::min<int64_t>(chunks - 1, 1 + (k - initial) * span / late);
      centre_[c] = classes > 1 ? (chunks - 1) * static_cast<double>(k) / (classes - 1) : 0.0;
    }
  }

  std::vector<double> weights(int chunk) const {
    const double sigma = std::max(1.0, chunks_ / 4.0);
    std::vector<double> w(arrival_.size(), 0.0);
    for (size_t c = 0; c < w.size(); ++c)
      if (chunk >= arrival_[c]) {
        const double z = (chunk - centre_[c]) / sigma;
        w[c] = 0.1 + std::exp(-0.5 * z * z);
      }
    return w;
  }

 private:
  std::vector<int64_t> arrival_;
  std::vector<double> centre_;
  int chunks_;
};

// Takes `count` samples from the class pools (taken from their backs): class c's share is
// count w_c / sum w (rounded by largest remainders, ties to the lower class). A class that runs out
// leaves its shortfall to the other classes with weight, in proportion to their weights; fewer than
// `count` come back only when all of those run dry.
std::vector<int64_t> deal(std::vector<std::vector<int64_t>>& pools, const std::vector<double>& weights, int64_t count) {
  std::vector<int64_t> rows;
  while (count > 0) {
    std::vector<size_t> active;
    double total = 0.0;
    for (size_t c = 0; c < pools.size(); ++c)
      if (weights[c] > 0.0 && !pools[c].empty()) {
        active.push_back(c);
        total += weights[c];
      }
    if (active.empty()) break;
    std::vector<int64_t> share(active.size());
    std::vector<double> remainder(active.size());
    int64_t assigned = 0;
    for (size_t i = 0; i < active.size(); ++i) {
      const double quota = static_cast<double>(count) * weights[active[i]] / total;
      share[i] = static_cast<int64_t>(std::floor(quota));
      remainder[i] = quota - static_cast<double>(share[i]);
      assigned += share[i];
    }
    std::vector<size_t> by_remainder(active.size());
    std::iota(by_remainder.begin(), by_remainder.end(), size_t{0});
    std::stable_sort(by_remainder.begin(), by_remainder.end(),
                     [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
    for (size_t i = 0; assigned < count && i < by_remainder.size(); ++i, ++assigned) ++share[by_remainder[i]];
    for (size_t i = 0; i < active.size(); ++i) {
      std::vector<int64_t>& pool = pools[active[i]];
      const int64_t take = std::min<int64_t>(share[i], static_cast<int64_t>(pool.size()));
      rows.insert(rows.end(), pool.end() - take, pool.end());
      pool.resize(pool.size() - static_cast<size_t>(take));
      count -= take;
    }
  }
  return rows;
}

// The rows of each class, shuffled.
std::vector<std::vector<int64_t>> class_pools(const Dataset& data, int32_t num_classes, Rng& rng) {
  std::vector<std::vector<int64_t>> pools(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < data.size(); ++i)
    pools[static_cast<size_t>(data.labels[static_cast<size_t>(i)])].push_back(i);
  for (auto& pool : pools) shuffle_indices(pool, rng);
  return pools;
}

std::vector<ChunkPlan> drift_plans(const Dataset& train, const Dataset& test, int32_t num_classes,
                                   const StreamOptions& options) {
  const int chunks = options.chunks;
  if (options.initial_classes < 0 || options.initial_classes > num_classes)
    fail("drift: initial_classes must be in 0.." + std::to_string(num_classes) + " (0: half), got " +
         std::to_string(options.initial_classes));
  const int64_t n = train.size();
  if (options.train_samples > 0 && options.train_samples * chunks > n)
    fail("drift: " + std::to_string(chunks) + " chunks of " + std::to_string(options.train_samples) +
         " training samples need " + std::to_string(options.train_samples * chunks) +
         " samples, the training set has " + std::to_string(n));
  const DriftPriors priors(num_classes, chunks, options.initial_classes, options.seed);
  Rng rng(options.seed ^ kDriftDealStream);
  std::vector<std::vector<int64_t>> train_pools = class_pools(train, num_classes, rng);
  const int64_t test_count = options.test_samples > 0 ? options.test_samples : test.size() / chunks;
  std::vector<ChunkPlan> plans;
  for (int t = 0; t < chunks; ++t) {
    const std::vector<double> weights = priors.weights(t);
    // Equal chunk sizes; the first n % chunks chunks take one sample more.
    const int64_t size = options.train_samples > 0 ? options.train_samples : n / chunks + (t < n % chunks ? 1 : 0);
    std::vector<int64_t> train_rows = deal(train_pools, weights, size);
    // The test part follows the class mix the chunk was dealt (the priors, bent where a class ran
    // out), drawn afresh per chunk: no repeats within a chunk, repeats across chunks.
    std::vector<double> dealt(static_cast<size_t>(num_classes), 0.0);
    for (int64_t row : train_rows) dealt[static_cast<size_t>(train.labels[static_cast<size_t>(row)])] += 1.0;
    std::vector<std::vector<int64_t>> test_pools = class_pools(test, num_classes, rng);
    std::vector<int64_t> test_rows = deal(test_pools, dealt, test_count);
    plans.push_back(ChunkPlan{"drift " + std::to_string(t), std::move(train_rows), std::move(test_rows), {}});
  }
  return plans;
}

// ---- checks ----

void check_common_options(const StreamOptions& options) {
  if (!(options.validation_fraction >= 0.0 && options.validation_fraction <= 0.9))
    fail("validation_fraction must be in [0, 0.9], got " + format_number(options.validation_fraction));
  if (options.train_samples < 0) fail("train_samples must be >= 0, got " + std::to_string(options.train_samples));
  if (options.test_samples < 0) fail("test_samples must be >= 0, got " + std::to_string(options.test_samples));
}

std::string scenario_list() {
  std::string list;
  for (const std::string& s : stream_scenarios()) list += (list.empty() ? "" : ", ") + s;
  return list;
}

}  // namespace

const std::vector<std::string>& stream_scenarios() {
  static const std::vector<std::string> scenarios{"split", "permuted", "rotated", "drift", "files"};
  return scenarios;
}

std::vector<StreamChunk> make_stream(const Dataset& train, const Dataset& test, const StreamOptions& options) {
  const std::string& scenario = options.scenario;
  if (std::find(stream_scenarios().begin(), stream_scenarios().end(), scenario) == stream_scenarios().end())
    fail("unknown scenario '" + scenario + "': expected one of " + scenario_list());
  if (scenario == "files") fail("the files scenario reads its chunks from chunk_specs: use make_file_stream");
  if (options.chunks < 1) fail("chunks must be at least 1, got " + std::to_string(options.chunks));
  check_common_options(options);
  if (!(options.label_noise >= 0.0 && options.label_noise < 1.0))
    fail("label_noise must be in [0, 1), got " + format_number(options.label_noise));
  if (!std::isfinite(options.rotation_step))
    fail("rotation_step must be a finite number of degrees, got " + format_number(options.rotation_step));
  if (train.size() == 0 || test.size() == 0)
    fail("needs non-empty train and test sets, got " + std::to_string(train.size()) + " and " +
         std::to_string(test.size()) + " samples");
  if (train.labels.empty() || test.labels.empty()) fail("needs labelled train and test sets (unlabelled data given)");
  if (train.sample_shape() != test.sample_shape())
    fail("train samples are " + shape_to_string(train.sample_shape()) + " but test samples are " +
         shape_to_string(test.sample_shape()));

  const int32_t num_classes = std::max(train.num_classes, test.num_classes);
  std::vector<ChunkPlan> plans;
  if (scenario == "split")
    plans = split_plans(train, test, num_classes, options.chunks);
  else if (scenario == "permuted")
    plans = permuted_plans(train, test, options.chunks, options.seed);
  else if (scenario == "rotated")
    plans = rotated_plans(train, test, options.chunks, options.rotation_step);
  else
    plans = drift_plans(train, test, num_classes, options);

  const double label_noise = scenario == "drift" ? options.label_noise : 0.0;
  StreamRngs rngs(options.seed);
  std::vector<StreamChunk> chunks;
  for (ChunkPlan& plan : plans)
    chunks.push_back(finish_chunk(std::move(plan), train, test, num_classes, options, label_noise, rngs));
  return chunks;
}

StreamChunk make_file_chunk(const std::string& spec, int index, const StreamOptions& options) {
  check_common_options(options);
  if (!(options.holdout > 0.0 && options.holdout < 1.0))
    fail("holdout must be in (0, 1), got " + format_number(options.holdout));
  const size_t at = spec.find('@');
  if (spec.empty() || at == 0 ||
      (at != std::string::npos && (at + 1 == spec.size() || spec.find('@', at + 1) != std::string::npos)))
    fail("chunk spec '" + spec + "': expected TRAIN or TRAIN@TEST");
  const Dataset train = load_dataset(spec.substr(0, at));
  const Dataset test = at == std::string::npos ? Dataset{} : load_dataset(spec.substr(at + 1));
  if (test.has_features() && test.sample_shape() != train.sample_shape())
    fail("chunk spec '" + spec + "': test samples are " + shape_to_string(test.sample_shape()) +
         " but training samples are " + shape_to_string(train.sample_shape()));
  ChunkPlan plan{spec, all_rows(train.size()), {}, {}};
  if (test.has_features()) {
    plan.test_rows = all_rows(test.size());
  } else {
    // The last `holdout` of the file, in file order, is the test part.
    const int64_t n = train.size();
    const int64_t held =
        n < 2 ? 0 : std::clamp<int64_t>(std::llround(options.holdout * static_cast<double>(n)), 1, n - 1);
    plan.test_rows.assign(plan.train_rows.end() - held, plan.train_rows.end());
    plan.train_rows.resize(static_cast<size_t>(n - held));
  }
  const Dataset& test_source = test.has_features() ? test : train;
  const int32_t chunk_classes = std::max(train.num_classes, test_source.num_classes);
  // Each chunk's generators depend on its index only, so a chunk that arrives alone (nnr retrain)
  // is split exactly as it would be inside a whole stream.
  StreamRngs rngs(derive_seed(options.seed, "chunk." + std::to_string(index)));
  return finish_chunk(std::move(plan), train, test_source, chunk_classes, options, 0.0, rngs);
}

std::vector<StreamChunk> make_file_stream(const StreamOptions& options) {
  if (options.chunk_specs.empty()) fail("files: no chunk specs given (\"TRAIN[@TEST]\", one per chunk)");
  std::vector<StreamChunk> chunks;
  int32_t num_classes = 0;
  // One spec loaded at a time: only its chunk's copies stay.
  for (const std::string& spec : options.chunk_specs) {
    chunks.push_back(make_file_chunk(spec, static_cast<int>(chunks.size()), options));
    const Shape& first = chunks.front().train.sample_shape();
    if (chunks.back().train.sample_shape() != first)
      fail("chunk spec '" + spec + "': samples are " + shape_to_string(chunks.back().train.sample_shape()) +
           " but the first chunk's are " + shape_to_string(first));
    num_classes = std::max(num_classes, chunks.back().train.num_classes);
  }
  // Every label is below its own chunk's count, so raising the count keeps the data sets valid.
  for (StreamChunk& chunk : chunks)
    for (Dataset* data : {&chunk.train, &chunk.validation, &chunk.test}) data->num_classes = num_classes;
  return chunks;
}

}  // namespace nnr
