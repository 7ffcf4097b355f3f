#include "engine/data/batcher.h"

#include <cstring>
#include <numeric>

#include "engine/core/error.h"
#include "kernels/thread_pool.h"

namespace nnr {

namespace {

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

}  // namespace

Batcher::Batcher(const Dataset& data, BatcherOptions options, Rng rng)
    : Batcher(data, all_indices(data.size()), options, rng) {}

Batcher::Batcher(const Dataset& data, std::vector<int64_t> subset, BatcherOptions options, Rng rng)
    : data_(data), pool_(std::move(subset)), options_(options), rng_(rng) {
  if (options_.batch_size < 1)
    throw InvalidArgument("[batcher] batch size must be at least 1, got " + std::to_string(options_.batch_size));
  const int64_t n = data_.size();
  for (size_t i = 0; i < pool_.size(); ++i)
    if (pool_[i] < 0 || pool_[i] >= n)
      throw InvalidArgument("[batcher] subset index " + std::to_string(pool_[i]) + " at position " + std::to_string(i) +
                            " is outside the data set of " + std::to_string(n) + " samples");
  if (!data_.labels.empty() && static_cast<int64_t>(data_.labels.size()) != n)
    throw InvalidArgument("[batcher] data set has " + std::to_string(n) + " samples but " +
                          std::to_string(data_.labels.size()) + " labels");
  order_ = pool_;
}

void Batcher::start_epoch() {
  order_ = pool_;
  if (options_.shuffle) shuffle_indices(order_, rng_);
  cursor_ = 0;
  in_epoch_ = true;
  ++epoch_;
}

void Batcher::restart() { in_epoch_ = false; }

int64_t Batcher::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(pool_.size()), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

bool Batcher::next(Batch& batch) {
  if (!in_epoch_) start_epoch();
  const size_t remaining = order_.size() - cursor_;
  const size_t b = static_cast<size_t>(options_.batch_size);
  if (remaining == 0 || (options_.drop_last && remaining < b)) {
    in_epoch_ = false;
    return false;
  }
  const size_t take = remaining < b ? remaining : b;
  batch.indices.assign(order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
                       order_.begin() + static_cast<std::ptrdiff_t>(cursor_ + take));
  cursor_ += take;
  batch.x = gather_rows(data_, batch.indices);
  batch.y.clear();
  if (!data_.labels.empty()) {
    batch.y.reserve(take);
    for (int64_t i : batch.indices) batch.y.push_back(data_.labels[static_cast<size_t>(i)]);
  }
  return true;
}

Tensor gather_rows(const Tensor& features, const std::vector<int64_t>& idx) {
  require_cpu(features, "gather_rows");
  if (!features.defined() || features.rank() < 1)
    throw InvalidArgument("[gather_rows] expected features of shape [N, ...], got " +
                          (features.defined() ? shape_to_string(features.shape()) : std::string("no tensor")));
  Shape shape = features.shape();
  const int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape);
  const int64_t row = n ? features.numel() / n : 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= n)
      throw InvalidArgument("[gather_rows] index " + std::to_string(idx[i]) + " at position " + std::to_string(i) +
                            " is outside [0, " + std::to_string(n) + ")");
    if (row)
      std::memcpy(out.data() + i * row, features.data() + idx[i] * row, static_cast<size_t>(row) * sizeof(float));
  }
  return out;
}

// Batches of at least this many floats are decoded on the loop's threads.
constexpr int64_t kParallelDecodeFloats = int64_t{1} << 15;

Tensor gather_rows(const Dataset& data, const std::vector<int64_t>& idx) {
  if (!data.stores_bytes()) return gather_rows(data.features, idx);
  const ByteFeatures& bytes = data.bytes;
  Shape shape = bytes.shape;
  const int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape);
  const int64_t row = data.sample_numel();
  for (size_t i = 0; i < idx.size(); ++i)
    if (idx[i] < 0 || idx[i] >= n)
      throw InvalidArgument("[gather_rows] index " + std::to_string(idx[i]) + " at position " + std::to_string(i) +
                            " is outside [0, " + std::to_string(n) + ")");
  // Converting a batch (100 000 floats for 128 Fashion-MNIST images) on one thread left the loop's
  // other threads spinning: split the rows across them.
  // The rows are scattered over the data set (tens of MB): fetching the next row's cache lines
  // while this one converts hides the memory latency (4x faster decoding than without, 784-byte rows).
  const int64_t count = static_cast<int64_t>(idx.size());
  const uint8_t* values = bytes.values.data();
  kernels::parallel_for(count, count * row >= kParallelDecodeFloats, [&](int64_t i) {
    if (i + 1 < count) {
      const uint8_t* next = values + idx[static_cast<size_t>(i) + 1] * row;
      for (int64_t k = 0; k < row; k += 64) __builtin_prefetch(next + k);
    }
    decode_bytes(values + idx[static_cast<size_t>(i)] * row, row, bytes.divisor, out.data() + i * row);
  });
  return out;
}

void shuffle_indices(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace nnr
