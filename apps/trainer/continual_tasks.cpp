#include "apps/trainer/continual_tasks.h"

#include <chrono>
#include <numeric>

#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/data/batcher.h"
#include "regularizers/importance_state.h"

namespace nnr {
namespace {

using Clock = std::chrono::steady_clock;

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

Dataset permuted(const Dataset& data, const std::vector<int64_t>& perm, const std::vector<int64_t>* rows) {
  const int64_t n = rows ? static_cast<int64_t>(rows->size()) : data.size();
  const int64_t per = static_cast<int64_t>(perm.size());
  Shape shape{n};
  for (int64_t d : data.sample_shape()) shape.push_back(d);
  Tensor features = Tensor::empty(shape);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  std::vector<float> sample(static_cast<size_t>(per));
  const float* in = sample.data();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = rows ? (*rows)[static_cast<size_t>(i)] : i;
    data.copy_sample(src, sample.data());
    float* out = features.data() + i * per;
    for (int64_t k = 0; k < per; ++k) out[k] = in[perm[static_cast<size_t>(k)]];
    labels[static_cast<size_t>(i)] = data.labels[static_cast<size_t>(src)];
  }
  return make_dataset(std::move(features), std::move(labels), data.num_classes, "permuted task");
}

}  // namespace

double ContinualResult::mean_epoch_seconds() const { return mean_of(epoch_seconds); }
double ContinualResult::mean_estimation_seconds() const { return mean_of(estimation_seconds); }

std::vector<ContinualTask> make_permuted_tasks(const Dataset& train, const Dataset& test, int count, uint64_t seed,
                                               int64_t train_samples) {
  if (count < 1) throw InvalidArgument("[continual] need at least one task, got " + std::to_string(count));
  if (train.size() == 0 || train.labels.empty() || test.labels.empty())
    throw InvalidArgument("[continual] permuted tasks need labelled, non-empty train and test sets");
  const int64_t per = train.sample_numel();
  if (test.size() == 0 || test.sample_numel() != per)
    throw InvalidArgument("[continual] train and test samples differ in size");
  Rng rng(seed);
  std::vector<int64_t> rows;
  const bool subset = train_samples > 0 && train_samples < train.size();
  if (subset) {
    rows.resize(static_cast<size_t>(train.size()));
    std::iota(rows.begin(), rows.end(), int64_t{0});
    shuffle_indices(rows, rng);
    rows.resize(static_cast<size_t>(train_samples));
  }
  std::vector<ContinualTask> tasks;
  for (int t = 0; t < count; ++t) {
    std::vector<int64_t> perm(static_cast<size_t>(per));
    std::iota(perm.begin(), perm.end(), int64_t{0});
    if (t > 0) shuffle_indices(perm, rng);
    tasks.push_back(ContinualTask{"permuted-" + std::to_string(t), permuted(train, perm, subset ? &rows : nullptr),
                                  permuted(test, perm, nullptr)});
  }
  return tasks;
}

ContinualResult run_continual_tasks(Sequential& model, const std::vector<ContinualTask>& tasks,
                                    const ContinualOptions& options, Regularizer* regularizer) {
  if (options.epochs < 1 || options.batch_size < 1)
    throw InvalidArgument("[continual] epochs and batch size must be >= 1");
  ContinualResult result;
  result.regularizer = regularizer ? regularizer->name() : "none";
  result.lambda = regularizer ? options.lambda : 0.0f;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const ContinualTask& task = tasks[t];
    std::unique_ptr<Optimizer> optimizer = make_optimizer(options.optimizer);
    optimizer->set_penalty_strength(result.lambda);
    if (regularizer) regularizer->begin_task(model);
    Batcher batches(task.train, BatcherOptions{options.batch_size, true, false}, Rng(options.seed + 1000003 * t));
    for (int e = 1; e <= options.epochs; ++e) {
      try {
        result.epoch_seconds.push_back(train_epoch(model, *optimizer, batches, e, options.epochs).seconds);
      } catch (const Error& err) {
        throw Error("[continual] task " + task.name + ": " + err.what());
      }
    }
    if (regularizer) {
      const auto start = Clock::now();
      regularizer->consolidate(model, task.train);
      result.estimation_seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::vector<double> acc;
    for (size_t s = 0; s <= t; ++s) acc.push_back(evaluate(model, tasks[s].test).accuracy);
    result.accuracy.push_back(std::move(acc));
  }
  if (!result.accuracy.empty()) result.final_average = mean_of(result.accuracy.back());
  return result;
}

std::vector<ExtraTensor> importance_extras(Sequential& model) {
  std::vector<ExtraTensor> extras;
  for (const auto& named : importance_tensors(model)) extras.push_back(ExtraTensor{named.first, named.second});
  return extras;
}

}  // namespace nnr
