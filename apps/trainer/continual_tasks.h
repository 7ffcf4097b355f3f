#pragma once
// The continual task loop: train one model on a sequence of tasks, consolidating a regularizer's
// importance (Ω, θ*) after each, and measure how much of every earlier task it keeps. The small
// core that the lifelong retraining rounds grow from.
//   for each task t: regularizer.begin_task; `epochs` epochs of train_epoch with the penalty
//   λ Σ Ω (θ − θ*)² fused into the optimizer step; regularizer.consolidate on the task's
//   training data; evaluate on the test sets of tasks 0..t.
#include <cstdint>
#include <string>
#include <vector>

#include "apps/trainer/model_file.h"
#include "engine/data/dataset.h"
#include "engine/nn/sequential.h"
#include "engine/optim/optimizer.h"
#include "regularizers/regularizer.h"

namespace nnr {

struct ContinualTask {
  std::string name;
  Dataset train;
  Dataset test;
};

// `count` permuted-pixel tasks: task 0 the identity, task t a fixed seeded permutation of each
// sample's features (the same for its train and test set). train_samples > 0 keeps a seeded
// random subset of that many training samples (the same subset for every task); 0 keeps all.
std::vector<ContinualTask> make_permuted_tasks(const Dataset& train, const Dataset& test, int count, uint64_t seed,
                                               int64_t train_samples = 0);

struct ContinualOptions {
  OptimizerOptions optimizer;    // a fresh optimizer (fresh momentum) per task
  int epochs = 2;                // per task
  int64_t batch_size = 64;
  float lambda = 0.0f;           // penalty strength; ignored without a regularizer
  uint64_t seed = 0;             // the batch order
};

struct ContinualResult {
  std::string regularizer;                    // "none" for plain fine-tuning
  float lambda = 0.0f;
  std::vector<std::vector<double>> accuracy;  // accuracy[t][s]: task s's test set after task t (s <= t)
  double final_average = 0.0;                 // mean of accuracy.back()
  std::vector<double> epoch_seconds;          // every training epoch
  std::vector<double> estimation_seconds;     // every consolidation (importance estimate + Ω, θ* update)
  double mean_epoch_seconds() const;
  double mean_estimation_seconds() const;
};

// Trains `model` on the tasks in order. regularizer == nullptr: fine-tune (no penalty).
ContinualResult run_continual_tasks(Sequential& model, const std::vector<ContinualTask>& tasks,
                                    const ContinualOptions& options, Regularizer* regularizer);

// Ω and θ* as save_model's extra tensors (nnr.omega.<param>, nnr.anchor.<param>).
std::vector<ExtraTensor> importance_extras(Sequential& model);

}  // namespace nnr
