#pragma once
// Shuffled minibatches of a Dataset, or of a subset of its samples. Each epoch draws a new
// permutation (Fisher-Yates with Rng::below) from the batcher's own generator, so a run with the
// same seed sees the same batches on every machine.
#include <cstdint>
#include <vector>

#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/data/dataset.h"

namespace nnr {

struct Batch {
  Tensor x;                      // [b, sample_shape...]
  std::vector<int32_t> y;        // b labels; empty when the data set has none
  std::vector<int64_t> indices;  // which samples of the data set these are
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct BatcherOptions {
  int64_t batch_size = 64;
  bool shuffle = true;     // false: samples in order (evaluation)
  bool drop_last = false;  // true: an epoch's last, smaller batch is skipped
};

class Batcher {
 public:
  // The batcher keeps a reference to `data`: the data set must outlive it.
  Batcher(const Dataset& data, BatcherOptions options, Rng rng);
  // Batches drawn from `subset` only (indices into data, repeats allowed).
  Batcher(const Dataset& data, std::vector<int64_t> subset, BatcherOptions options, Rng rng);

  // Fills `batch` with the next batch of the epoch and returns true, or returns false once at the
  // end of the epoch; the call after that starts a new epoch with a new permutation:
  //   while (batcher.next(batch)) step(batch);   // one epoch
  bool next(Batch& batch);
  // Abandons the current epoch; the next call to next() starts a new one.
  void restart();

  int64_t batches_per_epoch() const;
  int64_t epoch() const { return epoch_; }  // epochs started so far
  int64_t samples_per_epoch() const { return static_cast<int64_t>(order_.size()); }

 private:
  void start_epoch();

  const Dataset& data_;
  std::vector<int64_t> pool_;   // the samples this batcher draws from
  std::vector<int64_t> order_;  // this epoch's permutation of pool_
  BatcherOptions options_;
  Rng rng_;
  size_t cursor_ = 0;
  bool in_epoch_ = false;
  int64_t epoch_ = 0;
};

// Rows `idx` of `features` (dimension 0), stacked: [idx.size(), features.shape()[1:]...].
Tensor gather_rows(const Tensor& features, const std::vector<int64_t>& idx);
// Samples `idx` of a data set as floats, [idx.size(), sample_shape...], whether it keeps floats or
// bytes (converted here, per batch).
Tensor gather_rows(const Dataset& data, const std::vector<int64_t>& idx);

// Fisher-Yates shuffle of `v` with rng.below, the permutation every nnr shuffle uses.
void shuffle_indices(std::vector<int64_t>& v, Rng& rng);

}  // namespace nnr
