#pragma once
// ReplayMemory: the bounded store of past training samples a retraining round may replay.
// Samples live in groups (by chunk, by class, or by k-means cluster of the model's penultimate
// activations); each group is one arm of the sample bandit. Every group has a quota of
// capacity / group count samples (the remainder to the lowest group ids); when a group appears the
// others shrink to their new quotas by evicting uniformly at random. Within a group, arrivals are
// kept by reservoir sampling (Vitter's algorithm R over all the group's arrivals so far), so every
// sample a group has ever been offered is in the store with the same probability.
// All randomness comes from the memory's own seeded generator, whose state is saved with it: it is
// re-seeded at every add() from (seed, number of adds so far), so that pair is its whole state and a
// restored memory continues exactly as one that was never saved.
//
// Cluster grouping re-clusters everything at each add(), so a cluster's reservoir starts from the
// stored samples that land in it. Its n ("offered") is then estimated: a stored sample from a group
// that kept s of its n arrivals stands for n / s of them (its inverse inclusion probability), and a
// cluster's n is the rounded sum over its stored samples (at least their count), plus its new
// arrivals. Where the stored samples came from groups kept at different rates, or where a quota
// grows (a cluster emptied), the reservoir is only approximately uniform; with Chunk and Class
// grouping quotas never grow and every arrival a group was offered is stored with probability
// exactly quota / n.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "engine/data/dataset.h"

namespace nnr {

enum class MemoryGrouping { Chunk, Class, Cluster };
// "chunk" | "class" | "cluster"; throws nnr::InvalidArgument listing them otherwise.
MemoryGrouping parse_memory_grouping(const std::string& name);
std::string to_string(MemoryGrouping grouping);

struct ReplayMemoryOptions {
  int64_t capacity = 1000;  // samples; 0: the memory stays empty (Cluster: no embedding, no group counts)
  MemoryGrouping grouping = MemoryGrouping::Chunk;
  int clusters = 8;         // Cluster grouping: k of k-means
  uint64_t seed = 0;
};

// Penultimate activations [N, D] of features [N, ...] (the model's embedding), for Cluster grouping.
using EmbedFunction = std::function<Tensor(const Tensor& features)>;

class ReplayMemory {
 public:
  ReplayMemory(ReplayMemoryOptions options, Shape sample_shape, int32_t num_classes);

  // Offers every sample of `data` (a chunk's training part) as arrivals. Chunk grouping: one new
  // group with id `chunk`. Class grouping: one group per class id. Cluster grouping: `embed` is
  // required; the stored samples and the new ones are clustered together (seeded k-means on their
  // embeddings), groups are the clusters (ids 0..k-1), and each cluster keeps a reservoir sample
  // of what it was offered.
  void add(const Dataset& data, int64_t chunk, const EmbedFunction& embed = {});

  int64_t size() const;
  int64_t capacity() const { return options_.capacity; }
  const ReplayMemoryOptions& options() const { return options_; }
  // Live group ids that hold at least one sample, increasing. (Groups offered samples but given a
  // quota of 0, when there are more groups than capacity, count toward the quotas but are not listed.)
  std::vector<int64_t> group_ids() const;
  // Positions in dataset() of the samples of one group.
  std::vector<int64_t> group_members(int64_t group) const;
  // Every stored sample, in group order then arrival order (positions are stable until the next add).
  const Dataset& dataset() const { return stored_; }
  // The arrival number (over all adds, from 0) of the sample at `position` of dataset(): a stored
  // sample's identity, stable while it stays in the store.
  int64_t arrival_of(int64_t position) const { return arrival_of_.at(static_cast<size_t>(position)); }
  // Arrivals offered to a group so far (the reservoir's n).
  int64_t offered(int64_t group) const;

  // Stored samples (as tensors elsewhere) and the rest (groups, counters, generator) as JSON.
  nlohmann::json save_state() const;
  // Restores a save_state() with the samples it was saved with; throws nnr::Error on a mismatch.
  void load_state(const nlohmann::json& state, Dataset samples);

 private:
  ReplayMemoryOptions options_;
  Shape sample_shape_;
  int32_t num_classes_;
  Rng rng_;  // the next add()'s generator, seeded from (options_.seed, adds_)
  Dataset stored_;
  std::vector<int64_t> group_of_;  // per stored sample
  std::vector<std::pair<int64_t, int64_t>> offered_;  // (group, arrivals so far), increasing group
  std::vector<int64_t> arrival_of_;  // per stored sample: its arrival number over all adds
  int64_t arrivals_ = 0;             // samples offered so far, all groups
  int64_t adds_ = 0;                 // add() calls so far: the generator's stream number
};

}  // namespace nnr
