#pragma once
// The plain supervised loop: epochs of shuffled minibatches, and evaluation. The retraining
// rounds of the method are built from these same pieces.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "apps/trainer/graphed_step.h"
#include "engine/core/collective.h"
#include "engine/core/context.h"
#include "engine/data/batcher.h"
#include "engine/data/dataset.h"
#include "engine/nn/loss.h"
#include "engine/nn/sequential.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"

namespace nnr {

struct TrainProgress {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int64_t batch = 0;  // batches done in this epoch
  int64_t batches = 0;
  double loss = 0.0;  // mean training loss of this epoch so far
  double samples_per_second = 0.0;
  bool epoch_done = false;
};
using ProgressCallback = std::function<void(const TrainProgress&)>;

// Learning rate per optimizer step. "cosine" decays from the base rate to 0 over all steps of
// the run (one half cosine), which on Fashion-MNIST is worth about a point of test accuracy
// over a constant rate in 5 epochs; "constant" keeps the base rate.
struct LearningRateSchedule {
  std::string kind = "constant";  // constant | cosine
  float base_lr = 0.05f;
  int64_t total_steps = 0;
  float at(int64_t step) const;
};

struct EpochResult {
  double loss = 0.0;  // mean over the epoch's samples
  double seconds = 0.0;
  int64_t samples = 0;
};

// One optimizer step on one batch: forward, loss, backward, update of the open entries. Returns
// the batch's mean loss; when it is not finite, nothing is updated (the caller decides what a
// diverged step means). With a CUDA context the model must be on it and the batch is uploaded.
// The retraining rounds call it directly so that a bandit can be rewarded per step.
// A loop passes the same StepScratch to every step (the tape and the loss keep their buffers).
struct StepScratch {
  Tape tape;
  SoftmaxCrossEntropy loss;
};
double train_step(Sequential& model, Optimizer& optimizer, const Batch& batch, Context* cuda_context = nullptr,
                  StepScratch* scratch = nullptr);

// One pass over the batcher's epoch: forward, loss, backward, optimizer step per batch.
// Throws nnr::Error naming the epoch and batch if the loss stops being finite (the model is
// then unusable; callers must not save it over a good checkpoint).
// With a schedule, the optimizer's learning rate is set before each step from `step`, the
// run's step counter, which the epoch advances.
// With a CUDA context the model must already be on it (Sequential::to); each batch's features
// are uploaded through the context's caching allocator, its labels go to the loss on the host.
// With a GraphedTrainStep (on that context), every batch it takes runs as a replay of one recorded
// CUDA graph (graphed_step.h); the others (an epoch's last, smaller batch) run as above.
// When the loss of a batch is not finite its update is not applied (the eager path; a replayed
// step has applied it by the time its loss is known).
//
// Data parallel (issue #18): with a collective of several ranks, every rank must run the same
// epoch over the same batcher (same data, batch size and seed: the same global batches). Each
// rank then takes its contiguous share of every global batch (rank r of N: rows
// [r·B/N, (r+1)·B/N), the first B mod N ranks one row more; a share may be empty), computes the
// gradient of its share's mean loss, scales it by its share of the batch (b_r / B) and the ranks
// sum these: the update each rank applies is the single-process update for the whole global batch
// (up to float summation order), so weights and optimizer state stay identical on every rank.
// Every rank returns the same global losses (progress on every rank that passes a callback).
// With the model on a CUDA context the collective must be the NCCL one (cuda_collective()) on the
// context's device; no graph. A host collective of one rank is the plain loop; the NCCL one of one
// rank (NNR_COLLECTIVE=nccl) runs the data-parallel step (runs_data_parallel()).
EpochResult train_epoch(Sequential& model, Optimizer& optimizer, Batcher& batches, int epoch, int epochs,
                        const ProgressCallback& progress = {}, const LearningRateSchedule* schedule = nullptr,
                        int64_t* step = nullptr, Context* cuda_context = nullptr, GraphedTrainStep* graph = nullptr,
                        Collective* collective = nullptr);

// One data-parallel optimizer step on a global batch (see train_epoch): this rank's share
// forward, the all-reduce of the loss, backward with the gradient buckets' all-reduces started as
// their gradients become final (gradient_buckets below), the wait for them, then the optimizer step
// on every rank. Only the entries the parameters' masks open travel (one flat buffer, reused in
// `flat`): a retraining round at a 25 % weight budget all-reduces about a quarter of the bytes. Returns the
// global batch's mean loss, the same on every rank; when it is not finite, no rank runs backward
// or updates.
// A model on a CUDA device (NCCL collective): the share is uploaded, the open gradient ranges are
// packed on the device by device-to-device copies (one per range of open_gradient_ranges), summed
// by NCCL with each rank's share as its scale, and copied back; `flat` is then unused.
// `logit_term` (optional) adds a term to the global batch's loss on the logits, e.g. dark experience
// replay's (distillation.h: add_logit_matching_share). It is called on every rank with a share with
// that share's logits, the first row of the share in the global batch, the global batch's size, a
// gradient scale and the share's logit gradient (host tensors); it adds the term's gradient times
// the scale into that gradient and returns its share of the term's value (the ranks' returns add up
// to the term). The scale (global batch / share) undoes the share's weighting in the all-reduce.
using LogitTerm = std::function<double(const Tensor& share_logits, int64_t share_begin, int64_t global_rows,
                                       double grad_scale, Tensor& share_grad)>;
double train_step_data_parallel(Sequential& model, Optimizer& optimizer, const Batch& global_batch,
                                Collective& collective, StepScratch& scratch, std::vector<float>& flat,
                                const LogitTerm& logit_term = nullptr);

// A data-parallel step's gradients are summed in buckets, as PyTorch's DDP does: the parameters
// with open entries, in the order backward finishes them (the model's last parameter first), each
// whole in one bucket, a bucket closed once it holds `bucket_bytes` bytes of open entries (so one
// parameter larger than that is a bucket of its own; 0: one bucket of everything). Each bucket's
// all-reduce starts (Collective::start_all_reduce_sum) as soon as backward has finished all its
// parameters (Tape::set_gradients_final), while the layers below compute; the step waits for all
// of them before the optimizer step. Bucket b is floats [offset, offset + count) of the packed
// buffer, holding its parameters' open ranges in the order of `params` (indices into
// model.parameters()). The bucket size is all_reduce_bucket_bytes() (engine/core/collective.h):
// $NNR_ALLREDUCE_BUCKET_BYTES, 0 for the single all-reduce after backward. Each element is summed
// over the same ranks' values whichever the buckets, so with 2 ranks the weights are bitwise those
// of the single all-reduce (with more, MPI may add in another order for another message size).
struct GradientBucket {
  std::vector<size_t> params;
  size_t offset = 0, count = 0;
};
std::vector<GradientBucket> gradient_buckets(const std::vector<Parameter*>& params,
                                             const std::vector<std::vector<std::pair<int64_t, int64_t>>>& ranges,
                                             int64_t bucket_bytes);

// The entries of a parameter that a data-parallel step all-reduces: those its mask opens (the
// optimizer changes no other), as [begin, end) ranges of its flat data in increasing order, adjacent
// ones merged (a row mask's consecutive rows are one range). A closed entry's gradient is never
// read by the step, so a 25 % weight budget sends about a quarter of the bytes.
std::vector<std::pair<int64_t, int64_t>> open_gradient_ranges(const Parameter& p);

// Rank `root`'s parameter values copied to every rank (a data-parallel run's start): host
// parameters by broadcast, device ones by broadcast_device (the NCCL collective).
void broadcast_parameters(Sequential& model, Collective& collective, int root = 0);

// Whether every rank's parameter values are bitwise those of rank 0 (a hash of each rank's is
// compared with rank 0's; device parameters are hashed on the host); every rank gets the same answer.
bool parameters_identical(Sequential& model, Collective& collective);

struct Evaluation {
  int64_t samples = 0;
  double loss = 0.0;
  double accuracy = 0.0;
  std::vector<int64_t> class_count;
  std::vector<double> class_accuracy;  // per class; 0 where the class has no samples
};

// Inference over the whole data set in batches (dropout off). With a CUDA context the model must
// already be on it: each batch goes up, and only its logits [B, K] come back (for the argmax and
// the loss, computed on the host in double as on the CPU path).
// With a collective of several ranks (every rank calling with the same model and data), each rank
// evaluates its contiguous share of the samples and the sums are all-reduced: every rank returns
// the whole data set's evaluation (the sums are host buffers, also with a CUDA context).
Evaluation evaluate(Sequential& model, const Dataset& data, int64_t batch_size = 1000, Context* cuda_context = nullptr,
                    Collective* collective = nullptr);

// The accuracy over `data` of the predictions argmax_k(logits_k + offsets[c][k]), for each candidate
// offset vector c (K floats each), from one forward pass on the host (the logits are computed once
// and every candidate read from them). With a collective of several ranks, split and reduced as
// evaluate is: every rank returns the same accuracies. Throws nnr::InvalidArgument for an offset
// vector whose length is not the model's output width.
std::vector<double> accuracy_with_logit_offsets(Sequential& model, const Dataset& data,
                                                const std::vector<std::vector<float>>& offsets,
                                                int64_t batch_size = 1000, Collective* collective = nullptr);

// Softmax probabilities [N, K] for unlabelled features [N, ...] (on the host). With a CUDA context,
// as for evaluate: the forward pass runs on the device, the softmax of the logits on the host.
Tensor predict_probabilities(Sequential& model, const Tensor& features, int64_t batch_size = 1000,
                             Context* cuda_context = nullptr);

// Throws nnr::InvalidArgument saying what the model expects if samples of `sample_shape` do
// not fit it, or if its output has fewer classes than `num_classes`.
void check_model_accepts(const Sequential& model, const Shape& sample_shape, int32_t num_classes,
                         const std::string& data_name);

}  // namespace nnr
