#pragma once
// The retraining loop of Klabjan & Zhu (2020): one Retrainer keeps what a served model carries
// from round to round (the model, Ω and θ*, the replay memory, the bandits) and runs one round per
// chunk of new labelled data:
//   choose the weights to open → train with the importance penalty, the samples chosen step by
//   step → evaluate → consolidate Ω, θ* on the new chunk → add the chunk to the memory.
// Every choice reads validation data only (the chunks' validation parts): the sample bandit's
// rewards, the weight bandit's rewards, λ when it is "auto". Test parts are only evaluated for R.
//
// A round's budget is the same for every strategy but `all`: epochs × ceil(N / batch_size) steps
// of batch_size samples, N the new chunk's training samples, whatever the batches mix (`all`
// takes that many passes over everything seen). What the steps draw (strategy.h):
//   new      batches of the new chunk
//   replay   (1 − replay_fraction) of each batch from the new chunk, the rest uniformly from memory
//   bandit   the same split; bandit_share of the replay part from the memory group (or the new chunk)
//            the policy pulled, the rest uniformly from memory;
//            a pull lasts pull_steps steps and earns the drop of the loss on a validation probe
//            (probe_samples samples of the seen chunks' validation parts, fixed for the round)
// Weights: the output layer is always open (a class new in this chunk is learned through its own
// output row) and counts toward weight_budget; a WeightSelector over the other parameters opens
// groups (whole layers, or blocks of rows_per_group output neurons / filters with their bias) up to
// the rest of the budget;
// the weight bandit is rewarded per group with −g·Δθ over the group's weights, g the gradient of the
// validation loss before the round and Δθ what the round changed (the group's first-order share of
// the validation-loss drop). Frozen weights cost no weight-gradient FLOPs (layers count them).
// λ auto: at the first retraining round, each value of the regularizer's grid trains a pilot (the
// first lambda_pilot_fraction of the round's steps) from the same state; the one with the best
// validation accuracy over the seen chunks trains the round and is kept for every later round.
// The pilots' FLOPs are counted in that round.
// Prior correction (strategy.prior_correction): a round's batches mix the new chunk's classes with
// the memory's in proportions of their own (a class-incremental round gives its two new classes half
// of every batch), and the output biases learn those frequencies. After a round that brings a class
// never seen before (no other: there it measured no gain or a loss), the biases move by
// τ·(log π_seen − log π_round): π_round the class frequencies of the samples the round trained on,
// π_seen those of the validation parts of every chunk seen (the mix the model is evaluated on), both
// with one added count per class; classes never seen keep their bias. τ ∈ {0, 0.25, 0.5, 0.75, 1}
// is the most accurate on prior_probe_samples validation samples of the seen chunks (one forward
// pass, ties to the smaller τ), so a stream whose round mix already matches keeps τ = 0.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "apps/trainer/replay_memory.h"
#include "apps/trainer/strategy.h"
#include "apps/trainer/stream.h"
#include "apps/trainer/stream_report.h"
#include "engine/core/collective.h"
#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/nn/sequential.h"
#include "engine/optim/optimizer.h"
#include "regularizers/regularizer.h"

namespace nnr {

namespace bandits {
class SampleSelector;
class WeightSelector;
}  // namespace bandits

struct RetrainOptions {
  int epochs = 2;                  // passes' worth of the new chunk per round (see above)
  int64_t batch_size = 64;
  OptimizerOptions optimizer{"sgd", 0.03f, 0.9f, 0.0f};  // a fresh optimizer (fresh momentum) per round
  int64_t memory = 1000;           // replay memory capacity (samples)
  MemoryGrouping memory_grouping = MemoryGrouping::Chunk;
  int memory_clusters = 8;
  double replay_fraction = 0.5;    // of each batch, for replay and bandit samples, in [0, 1)
  double bandit_share = 0.1;       // of the replay part, from the pulled arm (the rest uniform over memory), in (0, 1];
                                   // 0.1 over 0.25 on validation (README: "What paper does")
  int pull_steps = 32;             // steps per sample-bandit pull (8 cost 10 % more FLOPs for no gain: README)
  int64_t probe_samples = 128;     // validation samples whose loss drop rewards a pull
  int64_t reward_gradient_samples = 256;  // validation samples of g in the weight rewards −g·Δθ
  double weight_budget = 0.25;     // fraction of all weights a round may open (random/importance/bandit)
  std::string weight_granularity = "neuron";  // layer | neuron
  int64_t rows_per_group = 16;     // neuron granularity: output neurons (filters) per group
  static constexpr float kDefaultLambda = -2.0f;  // the strategy's: strategy_lambda()
  static constexpr float kAutoLambda = -1.0f;     // chosen on validation data (below)
  float lambda = kDefaultLambda;   // penalty strength >= 0, or one of the two above
  double lambda_pilot_fraction = 0.25;
  int64_t prior_probe_samples = 1000;  // validation samples that choose τ of the prior correction
  // Weight aligning (Zhao et al. 2020, "Maintaining discrimination and fairness in class
  // incremental learning"): after a round that brought classes never seen before, scale the output
  // layer's weight rows of those classes so that their mean norm equals the older classes' (the
  // new classes' rows grow larger, which biases predictions towards them). No extra training.
  bool align_new_classes = false;
  std::string base_lr_schedule = "constant";  // train_base: constant | cosine (train_loop.h)
  // Each retraining round's steps: constant, or cosine from the optimizer's rate to 0 over the
  // round (the optimizer, momentum included, starts afresh every round anyway).
  std::string round_lr_schedule = "constant";
  RegularizerOptions regularizer = [] {
    RegularizerOptions r;
    r.samples = 512;  // per consolidation; a round's importance is an estimate, not a census
    return r;
  }();                             // its seed is derived from `seed`
  uint64_t seed = 0;               // the one user seed; every component derives its own
  // Data parallel (issue #18): with a collective of several ranks, every rank runs the same rounds
  // on the same stream and seed; each step's batch, every evaluation (rewards, probes, λ choice,
  // reports), the weight rewards' validation gradient and the importance estimates are split
  // across the ranks and reduced, so every rank keeps the same weights, Ω, memory and bandit
  // state. CPU only. Not serialized.
  Collective* collective = nullptr;
  Context* cuda = nullptr;         // train and evaluate on this CUDA context (the model lives on the
                                   // host between rounds: consolidation and the memory read it there)
};

// A retraining round stopped because training diverged: a step's loss, or an entry of a weight the
// step updated, is not finite (NaN or ±Inf; a non-finite gradient of an open entry shows up in the
// entry it updates). The message names the round, the chunk, the step and (for a weight) the
// parameter and entry.
class NonFiniteError : public Error {
 public:
  using Error::Error;
};

// The non-finite guard (on the host): throws NonFiniteError("<where>: parameter <name> entry <i> is
// <value> ...") at the first non-finite entry of `model`'s parameters, only the entries the
// parameters' masks open when `open_only` (all of them otherwise). Vectorized integer scan of the
// float bit patterns, no branch per entry: it reads each checked entry once.
void check_finite_parameters(Sequential& model, bool open_only, const std::string& where);

// Weight aligning of the output layer (the last rank-2 "*.weight" parameter, one row per class,
// on the host): rows of `new_classes` are scaled by γ = mean norm of the `old_classes` rows / mean
// norm of the new ones. Returns γ, or 1 (nothing changed) when either set is empty or a norm is 0.
// Throws nnr::InvalidArgument for a class outside the layer's rows.
double align_new_class_weights(Sequential& model, const std::vector<int32_t>& old_classes,
                               const std::vector<int32_t>& new_classes);

// The prior correction's bias shift at τ = 1 (see above): log((seen[c] + 1) / Σ(seen + 1)) −
// log((trained[c] + 1) / Σ(trained + 1)) for every class c with seen[c] > 0, else 0 (a class never
// seen keeps its bias). Throws nnr::InvalidArgument when the two counts differ in length.
std::vector<float> prior_correction_shift(const std::vector<double>& seen, const std::vector<double>& trained);

// A regularizer's default λ; a strategy's (its preset's λ where it sets one, else its regularizer's
// default); and the values "auto" tries: a decade either side of `middle`, the strategy's λ.
float default_lambda(const std::string& regularizer);
float strategy_lambda(const Strategy& strategy);
std::vector<float> lambda_grid(float middle);

class Retrainer {
 public:
  // `model` is the served model (on the host). Throws nnr::InvalidArgument on a bad strategy or option.
  Retrainer(Sequential model, Strategy strategy, RetrainOptions options);
  ~Retrainer();
  Retrainer(const Retrainer&) = delete;
  Retrainer& operator=(const Retrainer&) = delete;

  // Round 0: the model was trained on `chunk` already (train_base); consolidate Ω and θ* on it and
  // fill the memory, so the first retraining round starts from the state a served model would have.
  void adopt_base(const StreamChunk& chunk);
  // One retraining round on a new chunk (chunks must outlive the Retrainer: `all` and the
  // validation probes read every chunk seen). Evaluates the model on every chunk of `stream`
  // (R row) and on the validation parts of the chunks seen.
  // Non-finite guard: after every training step the step's loss and (on the CPU) the entries the
  // step updated are checked; on a CUDA context the weights are checked once, when the round's
  // training is done and they are back on the host, before anything else reads them. A NaN/Inf
  // throws NonFiniteError naming the round, step and parameter. After that (or any other
  // exception from a round) the Retrainer is UNUSABLE: its weights, bandits, memory and round
  // counter hold a half-run round; discard it (a served directory restores version n from disk).
  RoundRecord round(const StreamChunk& chunk, const std::vector<StreamChunk>& stream);
  // The same for a chunk that arrives alone (a served model): the record's test_accuracy holds the
  // chunk's own test part only. The chunk need not outlive the call (samples=all excepted).
  RoundRecord round(const StreamChunk& chunk);

  // Mean accuracy over the validation parts of the chunks seen so far, plus `extra` when given
  // (the regression gate compares the served and the retrained model on old and new chunks).
  double validation_accuracy(const Dataset* extra);
  int rounds() const { return rounds_; }
  // Train and evaluate on this CUDA context from now on (null: the CPU).
  void set_device(Context* cuda) { options_.cuda = cuda; }

  // What a served model carries to its next round besides its weights, Ω and θ* (which live in
  // the parameters): the round counter, λ, the bandits', memory's and regularizer's state and the
  // generators', as JSON, and as tensors the replay memory and the seen chunks' validation parts.
  // load_state restores it into a fresh Retrainer built with the same strategy and options over
  // the same weights, Ω and θ*: its next round is the one the saved Retrainer would have run.
  // Throws nnr::Error naming what does not match.
  struct SavedState {
    nlohmann::json meta;
    std::vector<std::pair<std::string, Tensor>> tensors;
  };
  SavedState save_state() const;
  void load_state(const nlohmann::json& meta, const std::map<std::string, Tensor>& tensors);

  Sequential& model() { return model_; }
  const Strategy& strategy() const { return strategy_; }
  float lambda() const { return lambda_; }
  // The replay memory (created by adopt_base or load_state; empty capacity for strategies that replay nothing).
  const ReplayMemory& memory() const { return *memory_; }

 private:
  // max_steps < 0: the whole round.
  void train_round(const StreamChunk& chunk, float lambda, int64_t max_steps, nlohmann::json& choices,
                   RoundCompute& compute);
  int64_t round_steps(const StreamChunk& chunk) const;
  // Sets every parameter's mask for the round; returns how many entries it opens.
  int64_t choose_weights(nlohmann::json& choices);
  void reward_weights(const std::vector<Tensor>& validation_grad, const std::vector<Tensor>& before);
  RoundRecord round(const StreamChunk& chunk, const std::vector<StreamChunk>* stream);
  Dataset seen_validation() const;
  std::vector<const Dataset*> seen_validation_parts() const;
  void make_memory(const Shape& sample_shape);
  void remember(const StreamChunk& chunk, int64_t index);
  // options_.align_new_classes: align_new_class_weights for the classes this round brought.
  void align_output_layer(const StreamChunk& chunk, nlohmann::json& choices);
  // strategy_.prior_correction: in a round that brings a new class, shifts the output biases by the
  // chosen τ (above); records the choice.
  void correct_prior(const StreamChunk& chunk, nlohmann::json& choices);

  Sequential model_;
  Strategy strategy_;
  RetrainOptions options_;
  float lambda_;
  std::unique_ptr<Regularizer> regularizer_;
  std::unique_ptr<ReplayMemory> memory_;
  std::unique_ptr<bandits::SampleSelector> samples_;
  std::unique_ptr<bandits::WeightSelector> weights_;
  std::vector<size_t> selectable_;  // model parameter index of each selector parameter (all but the output layer's)
  Rng weight_order_rng_;
  // Every chunk seen: its validation part (owned: rewards, λ and the gate read it every round) and,
  // in a stream, its training data (samples=all); a restored Retrainer has no training data.
  struct SeenChunk {
    std::string name;
    Dataset validation;
    const Dataset* train = nullptr;
  };
  std::vector<SeenChunk> seen_;
  int rounds_ = 0;
  // The labels the round's training steps drew, counted per class (the λ pilots' steps excluded).
  std::vector<int64_t> round_label_counts_;
  // strategy_.distill > 0: the logits of each stored sample when it entered the memory, by its
  // arrival number (ReplayMemory::arrival_of), `classes` floats each.
  std::map<int64_t, std::vector<float>> memory_logits_;
  // The stored logits of memory positions `rows` as one [rows, classes] tensor.
  Tensor stored_logits(const std::vector<int64_t>& rows) const;
};

// The base model: `epochs` epochs over chunk 0 with every weight open and no penalty (the same for
// every strategy of a stream). Returns its compute.
RoundCompute train_base(Sequential& model, const StreamChunk& chunk, const RetrainOptions& options);

// Evaluation of round `round` for the report: R row over every chunk's test part and the mean
// validation accuracy over chunks 0..round (split across the ranks of a data-parallel collective).
void evaluate_round(Sequential& model, const std::vector<StreamChunk>& stream, size_t round, Context* cuda,
                    Collective* collective, RoundRecord& record);

// Copies every parameter value of `from` into `to` (same spec), on the host.
void copy_parameters(Sequential& from, Sequential& to);

// The process's peak resident set (VmHWM) since the last reset_peak_rss, 0 where unknown. A round
// resets it when it starts, so each round reports its own peak.
int64_t peak_rss_bytes();
void reset_peak_rss();

// A whole stream: the base model once, then every strategy from a copy of it, round after round.
struct StreamRunOptions {
  std::string model_spec;
  RetrainOptions retrain;
  std::string scenario, data, device;
};
// Called after each round of each strategy (progress and per-round tables).
using RoundCallback = std::function<void(const std::string& strategy, const RoundRecord& record)>;
// Called with each strategy's model after its last round (on the host), e.g. to save it.
using ModelCallback = std::function<void(const std::string& strategy, Sequential& model)>;
StreamReport run_stream(const std::vector<StreamChunk>& stream, const std::vector<Strategy>& strategies,
                        const StreamRunOptions& options, const RoundCallback& on_round = {},
                        const ModelCallback& on_model = {});

}  // namespace nnr
