#pragma once
// GraphedTrainStep: train_epoch's step (zero_grad, forward, softmax cross-entropy, backward,
// optimizer step) recorded once as a CUDA graph and replayed for every batch of the same size
// (`nnr train --cuda-graph`). A small model's step is dozens of kernels of a few microseconds
// each, so launching them one by one costs more than running them; a replay is one launch.
//
// Per step the host copies the batch and its labels into page-locked buffers and writes the
// optimizer's step scalars (learning rate, Adam's bias corrections) beside them; the recorded
// work starts by copying those into fixed device buffers and ends by copying the loss back, and
// the host waits for it (the loss is checked for NaN every step, as in train_epoch).
// The first batch runs that work without recording it (a warm-up that creates the optimizer
// state, plans cuDNN and fills the allocator's cache), the next one records it, the rest replay.
// Before each replay the step compares what the recording froze (every parameter's update mask
// and storage, the penalty strength, the cuDNN workspace); on a change it warms up and records
// again. Batches of another shape (an epoch's last, partial batch) are left to the caller, and
// the recording is dropped then: layers keep buffers from step to step (MaxPool2d's argmax) that
// the graph writes and an eager step of another shape frees and replaces. For the same reason a
// caller that uses the model's layers in any other way between steps must call invalidate().
// A recording that fails (nnr::Error from step()) has already advanced the optimizer's host
// state (Adam's step counts) for the step it tried, so training must stop there.
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/core/captured_step.h"
#include "engine/core/context.h"
#include "engine/data/batcher.h"
#include "engine/nn/loss.h"
#include "engine/nn/sequential.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"

namespace nnr {

class GraphedTrainStep {
 public:
  // The model must be on `ctx` (Sequential::to) and outlive this object, as must the optimizer.
  // Throws nnr::InvalidArgument for a model with dropout (a replay would reuse one dropout mask
  // forever) or with parameters elsewhere.
  GraphedTrainStep(Sequential& model, Optimizer& optimizer, Context& ctx);
  ~GraphedTrainStep();
  GraphedTrainStep(const GraphedTrainStep&) = delete;
  GraphedTrainStep& operator=(const GraphedTrainStep&) = delete;

  // One training step on `batch` (host features and labels) at the optimizer's current learning
  // rate; sets `loss` to the batch's mean loss. Returns false, running nothing, when the batch's
  // shape differs from the first batch this object saw (and drops the recording: see above).
  bool step(const Batch& batch, double& loss);
  // Drops the recording; the next step warms up and records again.
  void invalidate() noexcept;

  struct Counts {
    int64_t warmups = 0;     // steps run without recording
    int64_t recordings = 0;  // steps recorded (and then replayed once)
    int64_t replays = 0;     // steps run as replays of an earlier recording
  };
  Counts counts() const { return counts_; }

 private:
  struct Frozen;  // what a recording depends on
  void prepare(const Batch& batch);
  void queue_step();

  Sequential& model_;
  Optimizer& optimizer_;
  Context& ctx_;
  std::vector<Parameter*> params_;
  int64_t classes_ = 0;
  Tape tape_;
  SoftmaxCrossEntropy loss_fn_;
  // Fixed device buffers the recording reads and writes, and their page-locked host sides.
  Tensor x_device_, labels_device_, scalars_device_, loss_device_;
  PinnedHostBuffer x_host_, labels_host_, scalars_host_, loss_host_;
  CapturedStep graph_;
  std::unique_ptr<Frozen> frozen_;  // at the last warm-up or recording; null: none yet
  Counts counts_;
};

}  // namespace nnr
