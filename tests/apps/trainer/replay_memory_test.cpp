#include "apps/trainer/replay_memory.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "engine/core/error.h"

using nnr::Dataset;
using nnr::MemoryGrouping;
using nnr::ReplayMemory;
using nnr::ReplayMemoryOptions;
using nnr::Tensor;

namespace {

// Samples of 3 floats: a unique sample id (its arrival number), its label, and a constant.
Dataset samples(int64_t first_id, const std::vector<int32_t>& labels, int32_t num_classes) {
  const int64_t n = static_cast<int64_t>(labels.size());
  Tensor features({n, 3});
  for (int64_t i = 0; i < n; ++i) {
    features[i * 3] = static_cast<float>(first_id + i);
    features[i * 3 + 1] = static_cast<float>(labels[static_cast<size_t>(i)]);
    features[i * 3 + 2] = 1.0f;
  }
  return Dataset{std::move(features), labels, num_classes};
}

Dataset chunk_of(int64_t first_id, int64_t n, int32_t label = 0, int32_t num_classes = 4) {
  return samples(first_id, std::vector<int32_t>(static_cast<size_t>(n), label), num_classes);
}

// Labels by run: {{class, count}, ...}.
std::vector<int32_t> runs(const std::vector<std::pair<int32_t, int>>& spec) {
  std::vector<int32_t> labels;
  for (const auto& [label, count] : spec) labels.insert(labels.end(), static_cast<size_t>(count), label);
  return labels;
}

Dataset copy_of(const Dataset& d) { return Dataset{d.features.clone(), d.labels, d.num_classes}; }

int64_t id_at(const ReplayMemory& memory, int64_t position) {
  return static_cast<int64_t>(memory.dataset().features[position * 3]);
}

ReplayMemoryOptions options(int64_t capacity, MemoryGrouping grouping, uint64_t seed = 0, int clusters = 8) {
  ReplayMemoryOptions o;
  o.capacity = capacity;
  o.grouping = grouping;
  o.seed = seed;
  o.clusters = clusters;
  return o;
}

int64_t quota(int64_t capacity, int64_t groups, int64_t rank) {
  return capacity / groups + (rank < capacity % groups ? 1 : 0);
}

// Every group holds min(quota, offered) samples at consecutive positions in arrival order, the
// capacity holds, and every sample's features still match its label.
void check_layout(const ReplayMemory& memory, const std::vector<int64_t>& live_groups) {
  const int64_t g = static_cast<int64_t>(live_groups.size());
  int64_t position = 0;
  for (int64_t rank = 0; rank < g; ++rank) {
    const int64_t group = live_groups[static_cast<size_t>(rank)];
    const auto members = memory.group_members(group);
    CHECK(static_cast<int64_t>(members.size()) == std::min(quota(memory.capacity(), g, rank), memory.offered(group)));
    for (size_t i = 0; i < members.size(); ++i) {
      CHECK(members[i] == position++);
      if (i > 0) CHECK(id_at(memory, members[i]) > id_at(memory, members[i - 1]));
    }
  }
  CHECK(memory.size() == position);
  CHECK(memory.size() <= memory.capacity());
  const Dataset& d = memory.dataset();
  REQUIRE(static_cast<int64_t>(d.labels.size()) == d.size());
  for (int64_t i = 0; i < d.size(); ++i)
    CHECK(d.features[i * 3 + 1] == static_cast<float>(d.labels[static_cast<size_t>(i)]));
}

}  // namespace

TEST_CASE("grouping names parse and print", "[memory]") {
  for (auto g : {MemoryGrouping::Chunk, MemoryGrouping::Class, MemoryGrouping::Cluster})
    CHECK(nnr::parse_memory_grouping(nnr::to_string(g)) == g);
  CHECK_THROWS_AS(nnr::parse_memory_grouping("chunks"), nnr::InvalidArgument);
  CHECK_THROWS_WITH(nnr::parse_memory_grouping("kmeans"), Catch::Contains("chunk, class or cluster"));
}

TEST_CASE("chunk grouping keeps every chunk at its quota, evicting when a chunk arrives", "[memory]") {
  ReplayMemory memory(options(10, MemoryGrouping::Chunk, 3), {3}, 4);
  CHECK(memory.size() == 0);
  CHECK(memory.group_ids().empty());

  memory.add(chunk_of(0, 7), 0);  // under its quota of 10: all kept
  CHECK(memory.group_ids() == std::vector<int64_t>{0});
  CHECK(memory.size() == 7);
  check_layout(memory, {0});

  memory.add(chunk_of(100, 12), 1);  // quotas 5, 5: chunk 0 evicts 2
  CHECK(memory.group_ids() == std::vector<int64_t>{0, 1});
  CHECK(memory.offered(0) == 7);
  CHECK(memory.offered(1) == 12);
  check_layout(memory, {0, 1});
  for (int64_t p : memory.group_members(0)) CHECK(id_at(memory, p) < 7);
  for (int64_t p : memory.group_members(1)) CHECK((id_at(memory, p) >= 100 && id_at(memory, p) < 112));

  memory.add(chunk_of(200, 5), 2);  // quotas 4, 3, 3 (remainder to the lowest id)
  check_layout(memory, {0, 1, 2});
  CHECK(memory.group_members(0).size() == 4);
  CHECK(memory.size() == 10);

  memory.add(chunk_of(300, 20), 3);  // quotas 3, 3, 2, 2
  memory.add(chunk_of(400, 1), 4);   // quotas 2, 2, 2, 2, 2
  check_layout(memory, {0, 1, 2, 3, 4});
  CHECK(memory.group_members(4).size() == 1);  // offered 1 < quota 2
  CHECK(memory.size() == 9);

  // More groups than capacity: the lowest ids get the slots, the rest count but hold nothing.
  ReplayMemory tiny(options(3, MemoryGrouping::Chunk), {3}, 4);
  for (int64_t c = 0; c < 5; ++c) tiny.add(chunk_of(c * 10, 4), c);
  CHECK(tiny.group_ids() == std::vector<int64_t>{0, 1, 2});
  CHECK(tiny.size() == 3);
  CHECK(tiny.offered(4) == 4);
  CHECK(tiny.offered(7) == 0);
}

TEST_CASE("class grouping: one group per class, uneven quotas", "[memory]") {
  ReplayMemory memory(options(11, MemoryGrouping::Class, 9), {3}, 5);
  memory.add(samples(0, runs({{2, 9}, {0, 6}, {4, 2}, {2, 3}}), 5), 0);  // classes 0, 2, 4: quotas 4, 4, 3
  CHECK(memory.group_ids() == std::vector<int64_t>{0, 2, 4});
  CHECK(memory.offered(2) == 12);
  check_layout(memory, {0, 2, 4});
  CHECK(memory.group_members(4).size() == 2);

  memory.add(samples(100, runs({{1, 8}, {2, 4}, {4, 5}}), 5), 1);  // classes 0, 1, 2, 4: quotas 3, 3, 3, 2
  CHECK(memory.group_ids() == std::vector<int64_t>{0, 1, 2, 4});
  CHECK(memory.offered(2) == 16);
  CHECK(memory.offered(4) == 7);
  check_layout(memory, {0, 1, 2, 4});
  CHECK(memory.size() == 11);
  for (int64_t g : memory.group_ids())
    for (int64_t p : memory.group_members(g)) CHECK(memory.dataset().labels[static_cast<size_t>(p)] == g);
  CHECK(memory.dataset().num_classes == 5);
}

TEST_CASE("capacity 0 stays empty and only counts", "[memory]") {
  for (auto grouping : {MemoryGrouping::Chunk, MemoryGrouping::Class}) {
    ReplayMemory memory(options(0, grouping), {3}, 4);
    memory.add(samples(0, runs({{1, 5}, {3, 2}}), 4), 0);
    CHECK(memory.size() == 0);
    CHECK(memory.group_ids().empty());
    CHECK(memory.offered(grouping == MemoryGrouping::Chunk ? 0 : 1) == (grouping == MemoryGrouping::Chunk ? 7 : 5));
  }
  ReplayMemory clustered(options(0, MemoryGrouping::Cluster), {3}, 4);
  bool embedded = false;
  clustered.add(chunk_of(0, 5), 0, [&](const Tensor& x) {
    embedded = true;
    return x.clone();
  });
  CHECK(clustered.size() == 0);
  CHECK_FALSE(embedded);
}

TEST_CASE("bad chunks and options are refused with [memory] messages", "[memory]") {
  ReplayMemory memory(options(10, MemoryGrouping::Class), {3}, 4);
  Dataset wide{Tensor({2, 4}), {0, 1}, 4};
  CHECK_THROWS_AS(memory.add(wide, 0), nnr::InvalidArgument);
  CHECK_THROWS_WITH(memory.add(wide, 0), Catch::StartsWith("[memory] chunk samples have shape"));
  CHECK_THROWS_WITH(memory.add(samples(0, {0, 4}, 4), 0), Catch::StartsWith("[memory] label 4"));
  CHECK_THROWS_WITH(memory.add(samples(0, {0, -1}, 4), 0), Catch::StartsWith("[memory] label -1"));
  Dataset unlabelled{Tensor({2, 3}), {}, 4};
  CHECK_THROWS_WITH(memory.add(unlabelled, 0), Catch::StartsWith("[memory] chunk has 2 samples but 0 labels"));
  CHECK(memory.size() == 0);

  ReplayMemory chunked(options(10, MemoryGrouping::Chunk), {3}, 4);
  CHECK_THROWS_WITH(chunked.add(chunk_of(0, 2), -1), Catch::StartsWith("[memory] chunk index"));

  ReplayMemory clustered(options(10, MemoryGrouping::Cluster), {3}, 4);
  CHECK_THROWS_AS(clustered.add(chunk_of(0, 2), 0), nnr::InvalidArgument);
  CHECK_THROWS_WITH(clustered.add(chunk_of(0, 2), 0), Catch::StartsWith("[memory] cluster grouping needs an embed"));
  CHECK_THROWS_WITH(clustered.add(chunk_of(0, 2), 0, [](const Tensor&) { return Tensor({5, 2}); }),
                    Catch::StartsWith("[memory] embed returned [5, 2] for 2 samples"));

  CHECK_THROWS_AS(ReplayMemory(options(-1, MemoryGrouping::Chunk), {3}, 4), nnr::InvalidArgument);
  CHECK_THROWS_AS(ReplayMemory(options(5, MemoryGrouping::Cluster, 0, 0), {3}, 4), nnr::InvalidArgument);
  CHECK_THROWS_AS(ReplayMemory(options(5, MemoryGrouping::Chunk), {3}, 0), nnr::InvalidArgument);
  CHECK_THROWS_AS(ReplayMemory(options(5, MemoryGrouping::Chunk), {}, 4), nnr::InvalidArgument);
}

// Each arrival of a group is in the memory with probability quota / n. Over R seeded repetitions an
// arrival's count is Binomial(R, p): every count must lie within 5 sigma of R p, and the mean squared
// z-score over all arrivals (1 in expectation) within [0.5, 1.6], which catches a bias too small for
// any single 5-sigma bound (e.g. 10% too often for the last chunk gives a mean near 4).
namespace {

constexpr int kRepetitions = 4000;
struct Expectation {
  int64_t first_id, count;
  double p;
};

void check_keep_frequencies(std::map<int64_t, int>& kept, const std::vector<Expectation>& expected) {
  double sum_z2 = 0.0;
  int64_t arrivals = 0;
  for (const auto& e : expected)
    for (int64_t id = e.first_id; id < e.first_id + e.count; ++id) {
      const double mean = kRepetitions * e.p, sd = std::sqrt(kRepetitions * e.p * (1 - e.p));
      const double z = (kept[id] - mean) / sd;
      INFO("sample " << id << " kept " << kept[id] << " times, expected " << mean);
      CHECK(std::abs(z) < 5.0);
      sum_z2 += z * z;
      ++arrivals;
    }
  CHECK(sum_z2 / static_cast<double>(arrivals) > 0.5);
  CHECK(sum_z2 / static_cast<double>(arrivals) < 1.6);
}

}  // namespace

TEST_CASE("reservoir: every arrival of a group is kept with probability quota / n", "[memory]") {
  SECTION("chunk grouping") {
    // capacity 12: chunk 0 (30 samples) quota 12, then 6, then 4; chunk 1 (20) 6 then 4; chunk 2 (10) 4.
    const std::vector<Expectation> expected{{0, 30, 4.0 / 30}, {100, 20, 4.0 / 20}, {200, 10, 4.0 / 10}};
    std::map<int64_t, int> kept;
    for (int r = 0; r < kRepetitions; ++r) {
      ReplayMemory memory(options(12, MemoryGrouping::Chunk, static_cast<uint64_t>(r)), {3}, 4);
      memory.add(chunk_of(0, 30), 0);
      memory.add(chunk_of(100, 20), 1);
      memory.add(chunk_of(200, 10), 2);
      REQUIRE(memory.size() == 12);
      for (int64_t i = 0; i < memory.size(); ++i) ++kept[id_at(memory, i)];
    }
    check_keep_frequencies(kept, expected);
  }
  SECTION("class grouping, a class offered across chunks") {
    // capacity 6. Chunk 0: 25 of class 0, 5 of class 1 (quotas 3, 3). Chunk 1: 15 of class 0 and 10 of
    // class 2 (quotas 2, 2, 2): class 0 has n = 40, class 1 n = 5, class 2 n = 10.
    std::vector<Expectation> expected{{0, 25, 2.0 / 40}, {25, 5, 2.0 / 5}, {100, 15, 2.0 / 40}, {115, 10, 2.0 / 10}};
    std::map<int64_t, int> kept;
    for (int r = 0; r < kRepetitions; ++r) {
      ReplayMemory memory(options(6, MemoryGrouping::Class, static_cast<uint64_t>(r) + 1000), {3}, 3);
      memory.add(samples(0, runs({{0, 25}, {1, 5}}), 3), 0);
      memory.add(samples(100, runs({{0, 15}, {2, 10}}), 3), 1);
      REQUIRE(memory.size() == 6);
      for (int64_t i = 0; i < memory.size(); ++i) ++kept[id_at(memory, i)];
    }
    check_keep_frequencies(kept, expected);
  }
}

namespace {

// Points of 3 floats around well-separated 2-D centres; the third float names the blob.
const float kCentres[3][2] = {{0.0f, 0.0f}, {20.0f, 0.0f}, {0.0f, 20.0f}};

Dataset blobs(const std::vector<int>& counts, uint64_t seed) {
  nnr::Rng rng(seed);
  std::vector<float> values;
  std::vector<int32_t> labels;
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < counts[static_cast<size_t>(b)]; ++i) {
      values.push_back(kCentres[b][0] + 0.5f * static_cast<float>(rng.normal()));
      values.push_back(kCentres[b][1] + 0.5f * static_cast<float>(rng.normal()));
      values.push_back(static_cast<float>(b));
      labels.push_back(i % 2);  // labels unrelated to the blobs
    }
  const int64_t n = static_cast<int64_t>(labels.size());
  return Dataset{Tensor::from_vector({n, 3}, values), labels, 2};
}

// The "penultimate activations": the first two features.
Tensor embed_xy(const Tensor& x) {
  const int64_t n = x.dim(0);
  Tensor out({n, 2});
  for (int64_t i = 0; i < n; ++i) out[i * 2] = x[i * 3], out[i * 2 + 1] = x[i * 3 + 1];
  return out;
}

// blob of each group; fails unless every group holds one blob and blobs map to distinct groups.
std::map<int64_t, int> blob_of_groups(const ReplayMemory& memory) {
  std::map<int64_t, int> blob_of;
  std::set<int> blobs_seen;
  for (int64_t g : memory.group_ids()) {
    std::set<int> blobs;
    for (int64_t p : memory.group_members(g)) blobs.insert(static_cast<int>(memory.dataset().features[p * 3 + 2]));
    REQUIRE(blobs.size() == 1);
    blob_of[g] = *blobs.begin();
    blobs_seen.insert(*blobs.begin());
  }
  CHECK(blobs_seen.size() == blob_of.size());
  return blob_of;
}

}  // namespace

TEST_CASE("cluster grouping recovers well-separated blobs as groups", "[memory]") {
  ReplayMemory memory(options(30, MemoryGrouping::Cluster, 4, 3), {3}, 2);
  memory.add(blobs({20, 40, 12}, 1), 0, embed_xy);
  REQUIRE(memory.group_ids().size() == 3);
  auto blob_of = blob_of_groups(memory);
  const int counts0[3] = {20, 40, 12};
  for (int64_t g : memory.group_ids()) {
    CHECK(memory.offered(g) == counts0[blob_of[g]]);
    CHECK(memory.group_members(g).size() == 10);  // every blob has at least quota 10 samples
  }
  for (int64_t g : {0, 1, 2}) CHECK(memory.group_members(g).front() == 10 * g);

  // The stored samples are re-clustered with the new ones; each stored sample of a blob that kept
  // 10 of n stands for n / 10 arrivals, so a blob's n is its old n plus its new arrivals.
  memory.add(blobs({5, 30, 50}, 2), 1, embed_xy);
  REQUIRE(memory.group_ids().size() == 3);
  blob_of = blob_of_groups(memory);
  const int counts1[3] = {5, 30, 50};
  for (int64_t g : memory.group_ids()) {
    CHECK(memory.offered(g) == counts0[blob_of[g]] + counts1[blob_of[g]]);
    CHECK(memory.group_members(g).size() == 10);
  }
  CHECK(memory.size() == 30);

  // Embedding runs in batches over the stored samples and the chunk.
  std::vector<int64_t> batches;
  memory.add(blobs({900, 900, 900}, 3), 2, [&](const Tensor& x) {
    batches.push_back(x.dim(0));
    return embed_xy(x);
  });
  CHECK(*std::max_element(batches.begin(), batches.end()) <= 1024);
  int64_t embedded = 0;
  for (int64_t b : batches) embedded += b;
  CHECK(embedded == 30 + 2700);
  blob_of_groups(memory);
  CHECK(memory.size() == 30);
}

TEST_CASE("same seed, same memory, another seed, another memory", "[memory]") {
  auto run = [](MemoryGrouping grouping, uint64_t seed) {
    ReplayMemory memory(options(8, grouping, seed, 3), {3}, 2);
    for (int c = 0; c < 3; ++c) {
      if (grouping == MemoryGrouping::Cluster)
        memory.add(blobs({30, 20, 25}, static_cast<uint64_t>(c)), c, embed_xy);
      else
        memory.add(samples(c * 100, runs({{0, 30}, {1, 25}}), 2), c);
    }
    return std::make_pair(memory.dataset().features.to_vector(), memory.save_state());
  };
  for (auto grouping : {MemoryGrouping::Chunk, MemoryGrouping::Class, MemoryGrouping::Cluster}) {
    const auto a = run(grouping, 42), b = run(grouping, 42), c = run(grouping, 43);
    CHECK(a.first == b.first);
    CHECK(a.second == b.second);
    CHECK(a.first != c.first);
  }
}

TEST_CASE("a saved and restored memory continues exactly as one never saved", "[memory]") {
  for (auto grouping : {MemoryGrouping::Chunk, MemoryGrouping::Class, MemoryGrouping::Cluster}) {
    INFO("grouping " << nnr::to_string(grouping));
    const bool clustered = grouping == MemoryGrouping::Cluster;
    auto chunk = [&](int c) {
      return clustered ? blobs({25, 10 + 7 * c, 30}, static_cast<uint64_t>(c) + 7)
                       : samples(c * 100, runs({{c % 2, 30}, {2, 11}}), 3);
    };
    const nnr::EmbedFunction embed = clustered ? nnr::EmbedFunction(embed_xy) : nnr::EmbedFunction();
    ReplayMemory original(options(10, grouping, 5, 3), {3}, 3);
    original.add(chunk(0), 0, embed);
    original.add(chunk(1), 1, embed);

    const nlohmann::json state = nlohmann::json::parse(original.save_state().dump());  // through text
    ReplayMemory restored(options(10, grouping, 5, 3), {3}, 3);
    restored.load_state(state, copy_of(original.dataset()));
    CHECK(restored.save_state() == state);
    CHECK(restored.group_ids() == original.group_ids());

    original.add(chunk(2), 2, embed);
    restored.add(chunk(2), 2, embed);
    CHECK(restored.save_state() == original.save_state());
    CHECK(restored.dataset().features.to_vector() == original.dataset().features.to_vector());
    CHECK(restored.dataset().labels == original.dataset().labels);
  }
}

TEST_CASE("malformed or mismatched state is refused", "[memory]") {
  ReplayMemory original(options(6, MemoryGrouping::Class, 1), {3}, 3);
  original.add(samples(0, runs({{0, 10}, {1, 10}, {2, 1}}), 3), 0);
  const nlohmann::json good = original.save_state();
  auto load = [&](const nlohmann::json& state) {
    ReplayMemory memory(options(6, MemoryGrouping::Class, 1), {3}, 3);
    memory.load_state(state, copy_of(original.dataset()));
  };
  CHECK_NOTHROW(load(good));

  auto with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json s = good;
    s[key] = value;
    return s;
  };
  CHECK_THROWS_AS(load(nlohmann::json::array()), nnr::Error);
  CHECK_THROWS_WITH(load(with("format", "something else")), Catch::StartsWith("[memory] malformed state: format tag"));
  nlohmann::json missing = good;
  missing.erase("offered");
  CHECK_THROWS_WITH(load(missing), Catch::StartsWith("[memory] malformed state"));
  CHECK_THROWS_WITH(load(with("groups", "0,1,2")), Catch::StartsWith("[memory] malformed state"));
  CHECK_THROWS_WITH(load(with("arrivals_total", -3)), Catch::StartsWith("[memory] malformed state"));
  nlohmann::json generator = good;
  generator["generator"]["adds"] = -1;
  CHECK_THROWS_WITH(load(generator), Catch::StartsWith("[memory] malformed state"));

  nlohmann::json reordered = good;
  std::reverse(reordered["groups"].begin(), reordered["groups"].end());
  CHECK_THROWS_WITH(load(reordered), Catch::Contains("group order"));
  nlohmann::json short_list = good;
  short_list["groups"].erase(short_list["groups"].begin());
  CHECK_THROWS_WITH(load(short_list), Catch::StartsWith("[memory] malformed state"));
  nlohmann::json overfull = good;
  overfull["offered"][0][1] = 1;  // class 0 holds 2 samples of 1 arrival
  CHECK_THROWS_WITH(load(overfull), Catch::Contains("more than its quota"));

  nlohmann::json other = good;
  other["options"]["capacity"] = 7;
  CHECK_THROWS_WITH(load(other), Catch::StartsWith("[memory] state was saved with options"));

  ReplayMemory memory(options(6, MemoryGrouping::Class, 1), {3}, 3);
  Dataset fewer = samples(0, {0, 1}, 3);
  CHECK_THROWS_WITH(memory.load_state(good, std::move(fewer)), Catch::StartsWith("[memory] state lists 5 samples"));
  CHECK(memory.size() == 0);  // a refused state changes nothing
}
