#include "apps/trainer/replay_memory.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>

#include "engine/core/error.h"

namespace nnr {
namespace {

using nlohmann::json;

constexpr const char* kStateFormat = "nnr-replay-memory-v1";
constexpr int64_t kEmbedBatch = 1024;    // rows per embed() call
constexpr int64_t kKMeansSample = 4096;  // points the centroids are fitted on, at most
constexpr int kKMeansIterations = 25;    // Lloyd iterations, at most
constexpr int32_t kMaxClasses = 65536;   // as engine/data/labels.h

// A stored or newly offered sample while add() decides what to keep.
struct Slot {
  bool from_chunk;  // row of the new chunk, else of the stored samples
  int64_t row;
  int64_t arrival;
};

// One group during add(): what it holds, what it was offered before, and its new arrivals.
struct GroupWork {
  int64_t offered = 0;
  std::vector<Slot> members;
  std::vector<int64_t> arrivals;  // rows of the new chunk, in arrival order
};

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The generator's seed for the add()-th call: independent streams per add, so (seed, adds) is the
// whole generator state and restoring it needs no replay of earlier draws.
uint64_t add_seed(uint64_t seed, int64_t add) {
  return mix64(mix64(seed) ^ (static_cast<uint64_t>(add) * 0xd1b54a32d192ed03ULL + 0x9e3779b97f4a7c15ULL));
}

std::string describe_shape(const Shape& shape) { return shape_to_string(shape); }

int64_t random_below(Rng& rng, int64_t n) { return static_cast<int64_t>(rng.below(static_cast<uint64_t>(n))); }

int64_t quota_of(int64_t capacity, int64_t group_count, int64_t rank) {
  return capacity / group_count + (rank < capacity % group_count ? 1 : 0);
}

// Rows [begin, end) of `features` as their own tensor (a batch for embed()).
Tensor rows_of(const Tensor& features, int64_t begin, int64_t end) {
  Shape shape = features.shape();
  const int64_t row = shape[0] ? features.numel() / shape[0] : 0;
  shape[0] = end - begin;
  Tensor out = Tensor::empty(shape);
  if (end > begin && row)
    std::memcpy(out.data(), features.data() + begin * row, static_cast<size_t>((end - begin) * row) * sizeof(float));
  return out;
}

// Appends the embeddings of every row of `features` to `points`, kEmbedBatch rows per call.
void embed_rows(const Tensor& features, const EmbedFunction& embed, std::vector<float>& points, int64_t& dim) {
  const int64_t n = features.dim(0);
  for (int64_t begin = 0; begin < n; begin += kEmbedBatch) {
    const int64_t end = std::min(n, begin + kEmbedBatch);
    Tensor embedded = embed(rows_of(features, begin, end));
    if (embedded.defined() && embedded.device() != Device::CPU) embedded = embedded.to_cpu();
    if (!embedded.defined() || embedded.rank() != 2 || embedded.dim(0) != end - begin || embedded.dim(1) < 1 ||
        (dim > 0 && embedded.dim(1) != dim))
      throw Error("[memory] embed returned " +
                  (embedded.defined() ? describe_shape(embedded.shape()) : std::string("no tensor")) + " for " +
                  std::to_string(end - begin) + " samples; expected [" + std::to_string(end - begin) + ", " +
                  (dim > 0 ? std::to_string(dim) : std::string("D")) + "]");
    dim = embedded.dim(1);
    if (!std::all_of(embedded.data(), embedded.data() + embedded.numel(), [](float v) { return std::isfinite(v); }))
      throw Error("[memory] embed returned non-finite values");
    points.insert(points.end(), embedded.data(), embedded.data() + embedded.numel());
  }
}

double squared_distance(const float* point, const double* centroid, int64_t dim) {
  double sum = 0.0;
  for (int64_t d = 0; d < dim; ++d) {
    const double diff = static_cast<double>(point[d]) - centroid[d];
    sum += diff * diff;
  }
  return sum;
}

int64_t nearest(const float* point, const std::vector<double>& centroids, int64_t k, int64_t dim) {
  int64_t best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < k; ++c) {
    const double distance = squared_distance(point, centroids.data() + c * dim, dim);
    if (distance < best_distance) best = c, best_distance = distance;
  }
  return best;
}

// Seeded k-means of `count` points of `dim` floats: greedy k-means++ seeding (2 + ln k candidates per
// centroid, as scikit-learn) and at most kKMeansIterations Lloyd steps on a seeded subset of at most
// kKMeansSample points, then every point goes to its nearest centroid. Returns cluster ids in [0, k).
std::vector<int64_t> kmeans(const std::vector<float>& points, int64_t count, int64_t dim, int64_t k, Rng& rng) {
  std::vector<int64_t> subset(static_cast<size_t>(count));
  std::iota(subset.begin(), subset.end(), int64_t{0});
  if (count > kKMeansSample) {
    for (int64_t i = 0; i < kKMeansSample; ++i)
      std::swap(subset[static_cast<size_t>(i)], subset[static_cast<size_t>(i + random_below(rng, count - i))]);
    subset.resize(static_cast<size_t>(kKMeansSample));
    std::sort(subset.begin(), subset.end());  // memory order; the subset is what was drawn
  }
  const int64_t m = static_cast<int64_t>(subset.size());
  k = std::min(k, m);
  auto point = [&](int64_t i) { return points.data() + subset[static_cast<size_t>(i)] * dim; };

  std::vector<double> centroids(static_cast<size_t>(k * dim));
  auto set_centroid = [&](int64_t c, int64_t i) {
    for (int64_t d = 0; d < dim; ++d) centroids[static_cast<size_t>(c * dim + d)] = point(i)[d];
  };
  set_centroid(0, random_below(rng, m));
  std::vector<double> closest(static_cast<size_t>(m));
  double potential = 0.0;
  for (int64_t i = 0; i < m; ++i)
    potential += closest[static_cast<size_t>(i)] = squared_distance(point(i), centroids.data(), dim);
  const int candidates = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::vector<double> trial(static_cast<size_t>(m)), best_trial(static_cast<size_t>(m));
  for (int64_t c = 1; c < k; ++c) {
    int64_t best = -1;
    double best_potential = std::numeric_limits<double>::infinity();
    for (int t = 0; t < candidates; ++t) {
      // Drawn with probability proportional to the squared distance to the nearest centroid so far.
      int64_t pick = m - 1;
      if (potential > 0.0) {
        const double target = rng.uniform() * potential;
        double running = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          running += closest[static_cast<size_t>(i)];
          if (running > target) {
            pick = i;
            break;
          }
        }
      } else {
        pick = random_below(rng, m);
      }
      double trial_potential = 0.0;
      for (int64_t i = 0; i < m; ++i) {
        double distance = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
          const double diff = static_cast<double>(point(i)[d]) - point(pick)[d];
          distance += diff * diff;
        }
        trial_potential += trial[static_cast<size_t>(i)] = std::min(closest[static_cast<size_t>(i)], distance);
      }
      if (trial_potential < best_potential) {
        best = pick, best_potential = trial_potential;
        best_trial.swap(trial);
      }
    }
    set_centroid(c, best);
    closest.swap(best_trial);
    potential = best_potential;
  }

  std::vector<int64_t> assignment(static_cast<size_t>(m), -1);
  std::vector<double> sums(centroids.size());
  std::vector<int64_t> sizes(static_cast<size_t>(k));
  for (int iteration = 0; iteration < kKMeansIterations; ++iteration) {
    bool changed = false;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t c = nearest(point(i), centroids, k, dim);
      if (c != assignment[static_cast<size_t>(i)]) assignment[static_cast<size_t>(i)] = c, changed = true;
    }
    if (!changed) break;
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(sizes.begin(), sizes.end(), 0);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t c = assignment[static_cast<size_t>(i)];
      ++sizes[static_cast<size_t>(c)];
      for (int64_t d = 0; d < dim; ++d) sums[static_cast<size_t>(c * dim + d)] += point(i)[d];
    }
    for (int64_t c = 0; c < k; ++c)  // an emptied cluster keeps its centroid
      if (sizes[static_cast<size_t>(c)] > 0)
        for (int64_t d = 0; d < dim; ++d)
          centroids[static_cast<size_t>(c * dim + d)] =
              sums[static_cast<size_t>(c * dim + d)] / static_cast<double>(sizes[static_cast<size_t>(c)]);
  }

  std::vector<int64_t> cluster(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    cluster[static_cast<size_t>(i)] = nearest(points.data() + i * dim, centroids, k, dim);
  return cluster;
}

Error malformed(const std::string& what) { return Error("[memory] malformed state: " + what); }

int64_t json_count(const json& value, const char* name) {
  if (!value.is_number_integer() || (!value.is_number_unsigned() && value.get<int64_t>() < 0))
    throw malformed(std::string(name) + " must be a non-negative integer, got " + value.dump());
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw malformed(std::string(name) + " is out of range: " + value.dump());
  return value.get<int64_t>();
}

}  // namespace

MemoryGrouping parse_memory_grouping(const std::string& name) {
  if (name == "chunk") return MemoryGrouping::Chunk;
  if (name == "class") return MemoryGrouping::Class;
  if (name == "cluster") return MemoryGrouping::Cluster;
  throw InvalidArgument("[memory] unknown grouping '" + name + "'; expected chunk, class or cluster");
}

std::string to_string(MemoryGrouping grouping) {
  switch (grouping) {
    case MemoryGrouping::Chunk: return "chunk";
    case MemoryGrouping::Class: return "class";
    case MemoryGrouping::Cluster: return "cluster";
  }
  return "unknown";
}

ReplayMemory::ReplayMemory(ReplayMemoryOptions options, Shape sample_shape, int32_t num_classes)
    : options_(options),
      sample_shape_(std::move(sample_shape)),
      num_classes_(num_classes),
      rng_(add_seed(options.seed, 0)) {
  if (options_.capacity < 0)
    throw InvalidArgument("[memory] capacity must be >= 0, got " + std::to_string(options_.capacity));
  if (options_.grouping == MemoryGrouping::Cluster && options_.clusters < 1)
    throw InvalidArgument("[memory] cluster grouping needs at least 1 cluster, got " +
                          std::to_string(options_.clusters));
  if (num_classes_ < 1 || num_classes_ > kMaxClasses)
    throw InvalidArgument("[memory] num_classes must be in 1.." + std::to_string(kMaxClasses) + ", got " +
                          std::to_string(num_classes_));
  if (sample_shape_.empty() || static_cast<int>(sample_shape_.size()) > Tensor::kMaxRank - 1 ||
      std::any_of(sample_shape_.begin(), sample_shape_.end(), [](int64_t d) { return d < 1; }))
    throw InvalidArgument("[memory] sample shape must have 1.." + std::to_string(Tensor::kMaxRank - 1) +
                          " positive dimensions, got " + describe_shape(sample_shape_));
  Shape shape{0};
  shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
  stored_.features = Tensor::empty(shape);
  stored_.num_classes = num_classes_;
}

void ReplayMemory::add(const Dataset& data, int64_t chunk, const EmbedFunction& embed) {
  const int64_t n = data.size();
  if (n > 0 && data.sample_shape() != sample_shape_)
    throw InvalidArgument("[memory] chunk samples have shape " + describe_shape(data.sample_shape()) +
                          ", the memory holds " + describe_shape(sample_shape_));
  if (n > 0 && data.features.device() != Device::CPU)
    throw InvalidArgument("[memory] chunk features must be on the CPU");
  if (static_cast<int64_t>(data.labels.size()) != n)
    throw InvalidArgument("[memory] chunk has " + std::to_string(n) + " samples but " +
                          std::to_string(data.labels.size()) + " labels");
  for (size_t i = 0; i < data.labels.size(); ++i)
    if (data.labels[i] < 0 || data.labels[i] >= num_classes_)
      throw InvalidArgument("[memory] label " + std::to_string(data.labels[i]) + " of sample " + std::to_string(i) +
                            " is outside [0, " + std::to_string(num_classes_) + ")");
  if (options_.grouping == MemoryGrouping::Chunk && chunk < 0)
    throw InvalidArgument("[memory] chunk index must be >= 0, got " + std::to_string(chunk));
  if (options_.grouping == MemoryGrouping::Cluster && !embed)
    throw InvalidArgument("[memory] cluster grouping needs an embed function (the model's penultimate activations)");

  Rng rng = rng_;  // a copy: rng_ stays at this add's fresh stream until the add succeeds
  const int64_t first_arrival = arrivals_;
  const int64_t stored_count = stored_.size();
  std::map<int64_t, GroupWork> groups;
  if (options_.grouping != MemoryGrouping::Cluster) {
    for (const auto& [group, offered] : offered_) groups[group].offered = offered;
    for (int64_t r = 0; r < stored_count; ++r)
      groups[group_of_[static_cast<size_t>(r)]].members.push_back({false, r, arrival_of_[static_cast<size_t>(r)]});
    for (int64_t i = 0; i < n; ++i)
      groups[options_.grouping == MemoryGrouping::Chunk ? chunk : data.labels[static_cast<size_t>(i)]]
          .arrivals.push_back(i);
  } else if (options_.capacity == 0) {
    // Nothing would be kept: skip the embedding and clustering, count the arrivals only.
    arrivals_ += n;
    rng_.reseed(add_seed(options_.seed, ++adds_));
    return;
  } else if (n > 0) {
    std::vector<float> points;
    int64_t dim = 0;
    if (stored_count > 0) embed_rows(stored_.features, embed, points, dim);
    embed_rows(data.features, embed, points, dim);
    const std::vector<int64_t> cluster = kmeans(points, stored_count + n, dim, options_.clusters, rng);
    // A stored sample stands for n / s arrivals of the group it was kept in (see the header).
    std::map<int64_t, double> weight_of_group;
    for (const auto& [group, offered] : offered_) {
      const auto members = group_members(group).size();
      if (members > 0) weight_of_group[group] = static_cast<double>(offered) / static_cast<double>(members);
    }
    std::map<int64_t, double> estimated;
    for (int64_t r = 0; r < stored_count; ++r) {
      const int64_t c = cluster[static_cast<size_t>(r)];
      groups[c].members.push_back({false, r, arrival_of_[static_cast<size_t>(r)]});
      estimated[c] += weight_of_group[group_of_[static_cast<size_t>(r)]];
    }
    for (auto& [c, work] : groups)
      work.offered = std::max<int64_t>(static_cast<int64_t>(work.members.size()), std::llround(estimated[c]));
    for (int64_t i = 0; i < n; ++i) groups[cluster[static_cast<size_t>(stored_count + i)]].arrivals.push_back(i);
  } else {
    return;  // nothing offered: keep the current clustering
  }

  const int64_t group_count = static_cast<int64_t>(groups.size());
  int64_t rank = 0, kept = 0;
  for (auto& [group, work] : groups) {
    const int64_t quota = quota_of(options_.capacity, group_count, rank++);
    auto& members = work.members;
    if (static_cast<int64_t>(members.size()) > quota) {
      // Uniform eviction down to the quota: a partial shuffle picks the uniformly random survivors.
      for (int64_t i = 0; i < quota; ++i)
        std::swap(members[static_cast<size_t>(i)],
                  members[static_cast<size_t>(i + random_below(rng, static_cast<int64_t>(members.size()) - i))]);
      members.resize(static_cast<size_t>(quota));
    }
    // Algorithm R: the offered-th arrival replaces a uniformly random member with probability quota / offered.
    for (const int64_t row : work.arrivals) {
      ++work.offered;
      const Slot slot{true, row, first_arrival + row};
      if (static_cast<int64_t>(members.size()) < quota) {
        members.push_back(slot);
      } else if (quota > 0) {
        const uint64_t j = rng.below(static_cast<uint64_t>(work.offered));
        if (j < static_cast<uint64_t>(quota)) members[static_cast<size_t>(j)] = slot;
      }
    }
    std::sort(members.begin(), members.end(), [](const Slot& a, const Slot& b) { return a.arrival < b.arrival; });
    kept += static_cast<int64_t>(members.size());
  }

  // Copy the survivors out in group order then arrival order.
  Shape shape{kept};
  shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
  Dataset stored;
  stored.features = Tensor::empty(shape);
  stored.num_classes = num_classes_;
  stored.labels.reserve(static_cast<size_t>(kept));
  std::vector<int64_t> group_of, arrival_of;
  std::vector<std::pair<int64_t, int64_t>> offered;
  group_of.reserve(static_cast<size_t>(kept));
  arrival_of.reserve(static_cast<size_t>(kept));
  const int64_t row_size = shape_numel(sample_shape_);
  float* out = stored.features.data();
  for (const auto& [group, work] : groups) {
    offered.emplace_back(group, work.offered);
    for (const Slot& slot : work.members) {
      const Dataset& source = slot.from_chunk ? data : stored_;
      std::memcpy(out, source.features.data() + slot.row * row_size, static_cast<size_t>(row_size) * sizeof(float));
      out += row_size;
      stored.labels.push_back(source.labels[static_cast<size_t>(slot.row)]);
      group_of.push_back(group);
      arrival_of.push_back(slot.arrival);
    }
  }
  stored_ = std::move(stored);
  group_of_ = std::move(group_of);
  arrival_of_ = std::move(arrival_of);
  offered_ = std::move(offered);
  arrivals_ += n;
  rng_.reseed(add_seed(options_.seed, ++adds_));
}

int64_t ReplayMemory::size() const { return stored_.size(); }

std::vector<int64_t> ReplayMemory::group_ids() const {
  std::vector<int64_t> ids;
  for (const int64_t g : group_of_)
    if (ids.empty() || ids.back() != g) ids.push_back(g);
  return ids;
}

std::vector<int64_t> ReplayMemory::group_members(int64_t group) const {
  const auto [first, last] = std::equal_range(group_of_.begin(), group_of_.end(), group);
  std::vector<int64_t> positions(static_cast<size_t>(last - first));
  std::iota(positions.begin(), positions.end(), static_cast<int64_t>(first - group_of_.begin()));
  return positions;
}

int64_t ReplayMemory::offered(int64_t group) const {
  const auto it =
      std::lower_bound(offered_.begin(), offered_.end(), std::make_pair(group, std::numeric_limits<int64_t>::min()));
  return it != offered_.end() && it->first == group ? it->second : 0;
}

json ReplayMemory::save_state() const {
  json offered = json::array();
  for (const auto& [group, count] : offered_) offered.push_back({group, count});
  return {{"format", kStateFormat},
          {"options",
           {{"capacity", options_.capacity},
            {"grouping", to_string(options_.grouping)},
            {"clusters", options_.clusters},
            {"seed", options_.seed}}},
          {"sample_shape", sample_shape_},
          {"num_classes", num_classes_},
          {"groups", group_of_},
          {"arrivals", arrival_of_},
          {"offered", offered},
          {"arrivals_total", arrivals_},
          {"generator", {{"seed", options_.seed}, {"adds", adds_}}}};
}

void ReplayMemory::load_state(const json& state, Dataset samples) {
  std::vector<int64_t> group_of, arrival_of;
  std::vector<std::pair<int64_t, int64_t>> offered;
  int64_t arrivals = 0, adds = 0;
  try {
    if (!state.is_object()) throw malformed("expected a JSON object, got " + std::string(state.type_name()));
    if (!state.contains("format") || state.at("format") != kStateFormat)
      throw malformed("format tag is " +
                      (state.contains("format") ? state.at("format").dump() : std::string("missing")) +
                      ", expected \"" + kStateFormat + "\"");
    const json& saved = state.at("options");
    const std::string grouping = saved.at("grouping").get<std::string>();
    const int64_t capacity = saved.at("capacity").get<int64_t>();
    const int clusters = saved.at("clusters").get<int>();
    const uint64_t seed = saved.at("seed").get<uint64_t>();
    if (grouping != to_string(options_.grouping) || capacity != options_.capacity || clusters != options_.clusters ||
        seed != options_.seed)
      throw Error("[memory] state was saved with options " + saved.dump() + ", this memory has capacity " +
                  std::to_string(options_.capacity) + ", grouping " + to_string(options_.grouping) + ", clusters " +
                  std::to_string(options_.clusters) + ", seed " + std::to_string(options_.seed));
    if (state.at("sample_shape").get<Shape>() != sample_shape_ ||
        state.at("num_classes").get<int32_t>() != num_classes_)
      throw Error("[memory] state holds samples of shape " + state.at("sample_shape").dump() + " in " +
                  state.at("num_classes").dump() + " classes, this memory " + describe_shape(sample_shape_) + " in " +
                  std::to_string(num_classes_));
    group_of = state.at("groups").get<std::vector<int64_t>>();
    arrival_of = state.at("arrivals").get<std::vector<int64_t>>();
    for (const json& entry : state.at("offered")) {
      if (!entry.is_array() || entry.size() != 2)
        throw malformed("offered entry " + entry.dump() + " is not [group, count]");
      offered.emplace_back(entry.at(0).get<int64_t>(), json_count(entry.at(1), "an offered count"));
    }
    arrivals = json_count(state.at("arrivals_total"), "arrivals_total");
    const json& generator = state.at("generator");
    if (generator.at("seed").get<uint64_t>() != options_.seed)
      throw malformed("generator seed differs from the options' seed");
    adds = json_count(generator.at("adds"), "generator adds");
  } catch (const json::exception& e) {
    throw malformed(e.what());
  }

  const int64_t count = static_cast<int64_t>(group_of.size());
  if (static_cast<int64_t>(arrival_of.size()) != count)
    throw malformed(std::to_string(count) + " group ids but " + std::to_string(arrival_of.size()) + " arrival numbers");
  if (count > options_.capacity)
    throw malformed(std::to_string(count) + " samples in a memory of capacity " + std::to_string(options_.capacity));
  for (size_t i = 0; i < offered.size(); ++i)
    if ((i > 0 && offered[i].first <= offered[i - 1].first) || offered[i].first < 0 ||
        (options_.grouping == MemoryGrouping::Cluster && offered[i].first >= options_.clusters))
      throw malformed("offered groups must be distinct, increasing and valid ids; got group " +
                      std::to_string(offered[i].first) + " at position " + std::to_string(i));
  for (int64_t r = 0; r < count; ++r) {
    const size_t i = static_cast<size_t>(r);
    const bool same_group = r > 0 && group_of[i] == group_of[i - 1];
    if (r > 0 && (group_of[i] < group_of[i - 1] || (same_group && arrival_of[i] <= arrival_of[i - 1])))
      throw malformed("samples are not in group order then arrival order at position " + std::to_string(r));
    if (arrival_of[i] < 0 || arrival_of[i] >= arrivals)
      throw malformed("arrival number " + std::to_string(arrival_of[i]) + " outside [0, " + std::to_string(arrivals) +
                      ")");
  }
  const int64_t group_count = static_cast<int64_t>(offered.size());
  for (int64_t rank = 0; rank < group_count; ++rank) {
    const auto [group, n] = offered[static_cast<size_t>(rank)];
    const int64_t members = std::count(group_of.begin(), group_of.end(), group);
    if (members > std::min(n, quota_of(options_.capacity, group_count, rank)))
      throw malformed("group " + std::to_string(group) + " holds " + std::to_string(members) +
                      " samples, more than its quota or its " + std::to_string(n) + " arrivals");
  }
  for (const int64_t g : group_of)
    if (!std::binary_search(offered.begin(), offered.end(), std::make_pair(g, int64_t{0}),
                            [](const auto& a, const auto& b) { return a.first < b.first; }))
      throw malformed("stored sample of group " + std::to_string(g) + ", which has no offered count");

  if (samples.size() != count)
    throw Error("[memory] state lists " + std::to_string(count) + " samples but " + std::to_string(samples.size()) +
                " were given");
  if (count > 0 && samples.sample_shape() != sample_shape_)
    throw Error("[memory] saved samples have shape " + describe_shape(samples.sample_shape()) + ", the memory holds " +
                describe_shape(sample_shape_));
  if (count > 0 && samples.features.device() != Device::CPU) samples.features = samples.features.to_cpu();
  if (static_cast<int64_t>(samples.labels.size()) != count)
    throw Error("[memory] " + std::to_string(count) + " saved samples but " + std::to_string(samples.labels.size()) +
                " labels");
  for (const int32_t label : samples.labels)
    if (label < 0 || label >= num_classes_)
      throw Error("[memory] saved label " + std::to_string(label) + " is outside [0, " + std::to_string(num_classes_) +
                  ")");
  if (count == 0) {
    Shape shape{0};
    shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
    samples.features = Tensor::empty(shape);
  }
  samples.num_classes = num_classes_;

  stored_ = std::move(samples);
  group_of_ = std::move(group_of);
  arrival_of_ = std::move(arrival_of);
  offered_ = std::move(offered);
  arrivals_ = arrivals;
  adds_ = adds;
  rng_.reseed(add_seed(options_.seed, adds_));
}

}  // namespace nnr
