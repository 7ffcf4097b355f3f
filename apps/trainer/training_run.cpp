#include "apps/trainer/training_run.h"

#include <memory>

#include "engine/core/collective.h"
#include "engine/core/error.h"

namespace nnr {

float default_learning_rate(const std::string& optimizer) { return optimizer == "adam" ? 0.002f : 0.05f; }

TrainingRunResult run_training(Sequential& model, Optimizer& optimizer, const Dataset& train,
                               const TrainingRunOptions& options, Context* cuda, Collective* parallel,
                               const ProgressCallback& progress) {
  if (options.cuda_graph && !cuda)
    throw InvalidArgument("[train] a CUDA graph needs a CUDA context (--device cuda)");
  if (options.cuda_graph && runs_data_parallel(parallel))
    throw InvalidArgument("[train] --cuda-graph is not data-parallel (the step all-reduces between backward and "
                          "update, which a replayed graph would skip): run without it under mpirun");
  // Every rank starts from rank 0's weights (the same seed builds the same model; --init files
  // could differ between machines).
  // A model on the device is broadcast on it (the NCCL collective).
  if (parallel) broadcast_parameters(model, *parallel, 0);
  // After the model's move to the device: it records the parameters' device storage.
  std::unique_ptr<GraphedTrainStep> graph;
  if (options.cuda_graph) graph = std::make_unique<GraphedTrainStep>(model, optimizer, *cuda);

  Batcher batches(train, BatcherOptions{options.batch_size, true, false}, Rng(options.seed ^ 0x5eedba7c4ULL));
  const LearningRateSchedule schedule{options.schedule, optimizer.learning_rate(),
                                      batches.batches_per_epoch() * options.epochs};
  TrainingRunResult result;
  for (int e = 1; e <= options.epochs; ++e) {
    const EpochResult r = train_epoch(model, optimizer, batches, e, options.epochs, progress, &schedule,
                                      &result.steps, cuda, graph.get(), parallel);
    result.seconds += r.seconds;
    result.epochs.push_back(r);
  }
  if (graph) {
    result.graph = graph->counts();
    graph.reset();  // returns the graph's memory before evaluation
  }
  if (parallel) {
    result.bytes_all_reduced = parallel->bytes_all_reduced();
    if (!parameters_identical(model, *parallel))
      throw Error("[train] the ranks' weights differ after training (rank " + std::to_string(parallel->rank()) +
                  "): the data-parallel run is not consistent; nothing was written");
  }
  return result;
}

}  // namespace nnr
