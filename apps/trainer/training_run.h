#pragma once
// A whole training run of `nnr train` on a built model: the batcher, the epochs under the
// learning-rate schedule, the optional CUDA graph of the step, and the data-parallel start and
// end (rank 0's weights broadcast first, every rank's weights checked identical last).
// apps/nnr/train_command.cpp keeps the flags and the printing.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apps/trainer/graphed_step.h"
#include "apps/trainer/train_loop.h"

namespace nnr {

// The learning rate when none is given: Adam 0.002, SGD 0.05 (with the cosine schedule, measured
// on Fashion-MNIST by bench/fashion_mnist_accuracy.sh).
float default_learning_rate(const std::string& optimizer);

struct TrainingRunOptions {
  int epochs = 5;
  int64_t batch_size = 128;
  std::string schedule = "cosine";  // constant | cosine (LearningRateSchedule), from the optimizer's rate
  uint64_t seed = 0;                // the shuffling's
  bool cuda_graph = false;          // replay one recorded step per batch (needs a CUDA context)
};

struct TrainingRunResult {
  std::vector<EpochResult> epochs;
  double seconds = 0.0;
  int64_t steps = 0;                                  // optimizer steps over the run
  std::optional<GraphedTrainStep::Counts> graph;      // with cuda_graph
  int64_t bytes_all_reduced = 0;                      // data parallel: over the run, per rank
};

// Trains `model` (already on `cuda`'s device when given) on `train`. With a collective of several
// ranks every rank must call it alike; throws nnr::Error when the ranks' weights differ at the end.
// A model on a CUDA device needs the NCCL collective (cuda_collective()) on that device; a CUDA
// graph is refused under a data-parallel collective.
TrainingRunResult run_training(Sequential& model, Optimizer& optimizer, const Dataset& train,
                               const TrainingRunOptions& options, Context* cuda = nullptr,
                               Collective* parallel = nullptr, const ProgressCallback& progress = {});

}  // namespace nnr
