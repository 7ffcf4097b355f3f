#include "apps/trainer/retraining.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <utility>

#include "apps/trainer/distillation.h"
#include "apps/trainer/train_loop.h"
#include "bandits/factory.h"
#include "bandits/selectors/sample_selector.h"
#include "bandits/selectors/weight_selector.h"
#include "engine/core/error.h"
#include "engine/data/batcher.h"
#include "engine/nn/model_spec.h"

namespace nnr {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The arm id of "the newest chunk" in the sample bandit: apart from every memory group id (chunk
// indices, class ids, cluster ids), and the same every round, so the policy keeps its evidence
// about how much fresh data is worth.
constexpr bandits::ArmId kNewDataArm = 1 << 30;

bool uses_memory(const Strategy& s) { return s.samples == "replay" || s.samples_from_bandit(); }

Dataset concatenate(const std::vector<const Dataset*>& parts, const std::string& source) {
  int64_t n = 0;
  int32_t classes = 0;
  for (const Dataset* d : parts) {
    n += d->size();
    classes = std::max(classes, d->num_classes);
  }
  Shape shape = parts.front()->features.shape();
  shape[0] = n;
  Tensor features = Tensor::empty(shape);
  std::vector<int32_t> labels;
  labels.reserve(static_cast<size_t>(n));
  float* out = features.data();
  for (const Dataset* d : parts) {
    std::copy(d->features.data(), d->features.data() + d->features.numel(), out);
    out += d->features.numel();
    labels.insert(labels.end(), d->labels.begin(), d->labels.end());
  }
  return make_dataset(std::move(features), std::move(labels), classes, source);
}

// Rows `a_rows` of `a` then rows `b_rows` of `b` as one batch.
Batch mixed_batch(const Dataset& a, const std::vector<int64_t>& a_rows, const Dataset& b,
                  const std::vector<int64_t>& b_rows) {
  Batch batch;
  const int64_t per = a.features.numel() / std::max<int64_t>(1, a.size());
  Shape shape = a.features.shape();
  shape[0] = static_cast<int64_t>(a_rows.size() + b_rows.size());
  batch.x = Tensor::empty(shape);
  float* out = batch.x.data();
  for (const auto& [data, rows] : {std::pair<const Dataset*, const std::vector<int64_t>*>{&a, &a_rows}, {&b, &b_rows}})
    for (const int64_t r : *rows) {
      std::copy(data->features.data() + r * per, data->features.data() + (r + 1) * per, out);
      out += per;
      batch.y.push_back(data->labels[static_cast<size_t>(r)]);
      batch.indices.push_back(r);
    }
  return batch;
}

// `count` distinct draws from [0, n) (all of them, shuffled, when count >= n).
std::vector<int64_t> draw_distinct(int64_t n, int64_t count, Rng& rng) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), int64_t{0});
  if (count >= n) {
    shuffle_indices(all, rng);
    return all;
  }
  for (int64_t i = 0; i < count; ++i) std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(i + rng.below(static_cast<uint64_t>(n - i)))]);
  all.resize(static_cast<size_t>(count));
  return all;
}

// Up to `count` samples spread evenly over the data sets (each one's share a seeded subset).
Dataset stratified_subset(const std::vector<const Dataset*>& parts, int64_t count, Rng& rng) {
  std::vector<Dataset> picked;
  const int64_t share = std::max<int64_t>(1, count / static_cast<int64_t>(parts.size()));
  for (const Dataset* d : parts) {
    if (d->size() == 0) continue;
    const std::vector<int64_t> rows = draw_distinct(d->size(), share, rng);
    picked.push_back(make_dataset(gather_rows(d->features, rows), [&] {
      std::vector<int32_t> y;
      for (const int64_t r : rows) y.push_back(d->labels[static_cast<size_t>(r)]);
      return y;
    }(), d->num_classes, "validation probe"));
  }
  std::vector<const Dataset*> ptrs;
  for (const Dataset& d : picked) ptrs.push_back(&d);
  return concatenate(ptrs, "validation probe");
}

// Index of the first non-finite float in [p, p + n), or -1. The common case (all finite) is one
// branch-free pass over the bit patterns that the compiler vectorizes: |x|'s bits plus the lowest
// exponent bit carry into bit 31 exactly when the exponent is all ones (Inf and NaN), and the
// carries are ORed together. Only a failing span is scanned again for the index.
int64_t first_nonfinite(const float* p, int64_t n) {
  uint32_t carry = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    carry |= (bits & 0x7fffffffu) + 0x00800000u;
  }
  if (!(carry & 0x80000000u)) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

bool is_parallel(const Collective* c) { return c && c->size() > 1; }

// dL/dθ of the mean loss on `data` with every weight open (masks restored after), on the host.
// Data parallel: each rank takes its contiguous share of the samples, weighs its share's mean-loss
// gradient by its share of the samples, and the ranks sum (every rank gets the whole gradient).
std::vector<Tensor> validation_gradient(Sequential& model, const Dataset& data, Collective* collective) {
  const std::vector<Parameter*> params = model.parameters();
  std::vector<UpdateMask> masks;
  for (Parameter* p : params) masks.push_back(p->mask);
  model.open_all();
  model.zero_grad();
  const int64_t n = data.size();
  const RankShare mine = is_parallel(collective) ? rank_share(n, collective->rank(), collective->size()) : RankShare{0, n};
  const int64_t begin = mine.begin, end = mine.end;
  if (end > begin) {
    StepScratch scratch;
    std::vector<int64_t> rows(static_cast<size_t>(end - begin));
    std::iota(rows.begin(), rows.end(), begin);
    Tensor share;  // this rank's rows when it has only some
    if (end - begin < n) share = gather_rows(data.features, rows);
    const std::vector<int32_t> y(data.labels.begin() + begin, data.labels.begin() + end);
    model.forward(end - begin < n ? share : data.features, scratch.tape);
    scratch.tape.apply_loss(scratch.loss, y);
    scratch.tape.backward();
  }
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    grads.push_back(params[i]->grad.clone());
    params[i]->mask = masks[i];
  }
  if (is_parallel(collective)) {
    const float weight = n ? static_cast<float>(static_cast<double>(end - begin) / static_cast<double>(n)) : 0.0f;
    for (Tensor& g : grads) {
      for (int64_t i = 0; i < g.numel(); ++i) g.data()[i] *= weight;
      collective->all_reduce_sum(g.data(), g.numel());
    }
  }
  model.zero_grad();
  return grads;
}

// Data parallel: the round's FLOPs summed over the ranks (each counted its own share of the steps
// and evaluations, and the work every rank repeats), identical on every rank.
void sum_over_ranks(Collective* collective, ComputeCounts& c) {
  if (!is_parallel(collective)) return;
  double v[3] = {static_cast<double>(c.forward_flops), static_cast<double>(c.input_grad_flops),
                 static_cast<double>(c.weight_grad_flops)};
  collective->all_reduce_sum(v, 3);
  c.forward_flops = static_cast<int64_t>(v[0]);
  c.input_grad_flops = static_cast<int64_t>(v[1]);
  c.weight_grad_flops = static_cast<int64_t>(v[2]);
}

std::vector<Tensor> parameter_values(Sequential& model) {
  std::vector<Tensor> values;
  for (Parameter* p : model.parameters()) values.push_back(p->value.clone());
  return values;
}

// What a λ candidate must restore: the weights, SI's running sums and the sample bandit.
struct RoundStart {
  std::vector<Tensor> values, path_integrals;
  nlohmann::json samples;
};

RoundCompute compute_between(const ComputeCounts& before, const ComputeCounts& after) {
  const ComputeCounts d = after - before;
  RoundCompute c;
  c.forward_flops = d.forward_flops;
  c.input_grad_flops = d.input_grad_flops;
  c.weight_grad_flops = d.weight_grad_flops;
  return c;
}

// Mean over the data sets (each chunk's validation part counts once, whatever its size).
double mean_accuracy(Sequential& model, const std::vector<const Dataset*>& parts, Context* cuda,
                     Collective* collective) {
  double sum = 0.0;
  int counted = 0;
  for (const Dataset* d : parts) {
    if (d->size() == 0) continue;
    sum += evaluate(model, *d, 1000, cuda, collective).accuracy;
    ++counted;
  }
  return counted ? sum / counted : 0.0;
}

Tensor labels_as_tensor(const std::vector<int32_t>& labels) {
  Tensor t = Tensor::empty({static_cast<int64_t>(labels.size())});
  for (size_t i = 0; i < labels.size(); ++i) t.data()[i] = static_cast<float>(labels[i]);  // exact below 2^24
  return t;
}

std::vector<int32_t> labels_from_tensor(const Tensor& t, const std::string& what) {
  std::vector<int32_t> labels(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < labels.size(); ++i) {
    const float v = t.data()[i];
    if (!(v >= 0.0f && v < 16777216.0f) || v != std::floor(v)) throw Error("[retrain] " + what + " holds a label that is no class index");
    labels[i] = static_cast<int32_t>(v);
  }
  return labels;
}

Dataset copy_of(const Dataset& d) { return make_dataset(d.features.clone(), d.labels, d.num_classes, "copy"); }

nlohmann::json rng_to_json(const Rng& rng) {
  const Rng::State st = rng.state();
  return {{"words", st.words}, {"spare_normal", st.spare_normal}, {"has_spare_normal", st.has_spare_normal}};
}

Rng rng_from_json(const nlohmann::json& j) {
  Rng::State st;
  st.words = j.at("words").get<std::array<uint64_t, 4>>();
  st.spare_normal = j.at("spare_normal").get<double>();
  st.has_spare_normal = j.at("has_spare_normal").get<bool>();
  Rng rng;
  rng.set_state(st);
  return rng;
}

}  // namespace

namespace {

struct NonFiniteEntry {
  const Parameter* parameter = nullptr;
  int64_t index = -1;
};

// The first non-finite (open, with open_only) entry of the model's parameters, if any.
NonFiniteEntry find_nonfinite(Sequential& model, bool open_only) {
  for (const Parameter* p : model.parameters()) {
    if (p->value.device() != Device::CPU)
      throw Error("[retrain] the non-finite check reads parameter " + p->name + " on the host, but it is not there");
    const float* data = p->value.data();
    const UpdateMask& mask = p->mask;
    if (!open_only || mask.kind != UpdateMask::Kind::Rows) {
      // Every entry (element masks too: a whole-parameter scan is as cheap as decoding the bits).
      const int64_t i = first_nonfinite(data, p->value.numel());
      if (i >= 0) return {p, i};
      continue;
    }
    const int64_t len = p->row_length();
    for (size_t k = 0; k < mask.rows.size();) {
      // A run of consecutive rows is one contiguous span.
      size_t end = k + 1;
      while (end < mask.rows.size() && mask.rows[end] == mask.rows[end - 1] + 1) ++end;
      const int64_t first = mask.rows[k] * len;
      const int64_t i = first_nonfinite(data + first, (mask.rows[end - 1] + 1) * len - first);
      if (i >= 0) return {p, first + i};
      k = end;
    }
  }
  return {};
}

[[noreturn]] void throw_nonfinite(const NonFiniteEntry& bad, const std::string& where) {
  std::ostringstream msg;
  msg << where << ": parameter " << bad.parameter->name << " entry " << bad.index << " is "
      << bad.parameter->value.data()[bad.index] << ": training diverged (try a smaller --lr or --lambda)";
  throw NonFiniteError(msg.str());
}

}  // namespace

void check_finite_parameters(Sequential& model, bool open_only, const std::string& where) {
  const NonFiniteEntry bad = find_nonfinite(model, open_only);
  if (bad.parameter) throw_nonfinite(bad, where);
}

float default_lambda(const std::string& regularizer) {
  // The order of magnitude each penalty's Ω takes on Fashion-MNIST (MAS and SNI Ω are normalised,
  // EWC's Fisher and SI's ω are small). On split Fashion-MNIST, --lambda auto's validation pilots
  // put SNI's 0.003, 0.03 and 0.3 within a point of each other.
  if (regularizer == "l2" || regularizer == "mas") return 0.3f;
  if (regularizer == "ewc" || regularizer == "online-ewc") return 300.0f;
  if (regularizer == "si") return 1000.0f;
  if (regularizer == "sni") return 0.03f;
  return 1.0f;
}

float strategy_lambda(const Strategy& strategy) {
  return strategy.lambda >= 0.0f ? strategy.lambda : default_lambda(strategy.regularizer);
}

std::vector<float> lambda_grid(float middle) {
  return {middle / 10.0f, middle, middle * 10.0f};
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

void reset_peak_rss() {
  // Linux: writing 5 to clear_refs resets VmHWM to the current RSS (harmless where unsupported).
  std::ofstream clear("/proc/self/clear_refs");
  if (clear) clear << "5";
}

void copy_parameters(Sequential& from, Sequential& to) {
  const std::vector<Parameter*> a = from.parameters(), b = to.parameters();
  if (a.size() != b.size()) throw InvalidArgument("[retrain] models differ in their parameters");
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]->value.shape() != b[i]->value.shape())
      throw InvalidArgument("[retrain] parameter " + a[i]->name + " differs in shape");
    b[i]->value.copy_from(a[i]->value);
  }
}

RoundCompute train_base(Sequential& model, const StreamChunk& chunk, const RetrainOptions& options) {
  const auto start = Clock::now();
  reset_peak_rss();
  const ComputeCounts before = model.compute_counts();
  model.open_all();
  auto optimizer = make_optimizer(options.optimizer);
  if (options.cuda) model.to(Device::CUDA, *options.cuda);
  Batcher batches(chunk.train, BatcherOptions{options.batch_size, true, false},
                  Rng(derive_seed(options.seed, "batches.base")));
  const LearningRateSchedule schedule{options.base_lr_schedule, options.optimizer.lr,
                                      batches.batches_per_epoch() * options.epochs};
  int64_t samples = 0, step = 0;
  for (int e = 1; e <= options.epochs; ++e)
    samples += train_epoch(model, *optimizer, batches, e, options.epochs, {}, &schedule, &step, options.cuda, nullptr,
                           options.collective)
                   .samples;
  if (options.cuda) model.to(Device::CPU, *options.cuda);
  ComputeCounts spent = model.compute_counts() - before;
  sum_over_ranks(options.collective, spent);
  RoundCompute c = compute_between(ComputeCounts{}, spent);
  c.samples = samples;
  c.parameters_updated = model.parameter_count();
  c.train_seconds = c.round_seconds = seconds_since(start);
  c.peak_rss_bytes = peak_rss_bytes();
  return c;
}

void evaluate_round(Sequential& model, const std::vector<StreamChunk>& stream, size_t round, Context* cuda,
                    Collective* collective, RoundRecord& record) {
  if (cuda) model.to(Device::CUDA, *cuda);
  record.test_accuracy.clear();
  for (const StreamChunk& c : stream)
    record.test_accuracy.push_back(evaluate(model, c.test, 1000, cuda, collective).accuracy);
  std::vector<const Dataset*> seen;
  for (size_t j = 0; j <= round && j < stream.size(); ++j) seen.push_back(&stream[j].validation);
  record.validation_accuracy = mean_accuracy(model, seen, cuda, collective);
  if (cuda) model.to(Device::CPU, *cuda);
}

Retrainer::Retrainer(Sequential model, Strategy strategy, RetrainOptions options)
    : model_(std::move(model)),
      strategy_(std::move(strategy)),
      options_(std::move(options)),
      lambda_(options_.lambda),
      weight_order_rng_(derive_seed(options_.seed, "weights.order")) {
  validate_strategy(strategy_);
  if (options_.epochs < 1 || options_.batch_size < 1)
    throw InvalidArgument("[retrain] epochs and batch size must be >= 1");
  if (!(options_.replay_fraction >= 0.0 && options_.replay_fraction < 1.0))
    throw InvalidArgument("[retrain] replay fraction must be in [0, 1), got " + std::to_string(options_.replay_fraction));
  if (!(options_.bandit_share > 0.0 && options_.bandit_share <= 1.0))
    throw InvalidArgument("[retrain] bandit share must be in (0, 1], got " + std::to_string(options_.bandit_share));
  if (!(options_.weight_budget > 0.0 && options_.weight_budget <= 1.0))
    throw InvalidArgument("[retrain] weight budget must be in (0, 1], got " + std::to_string(options_.weight_budget));
  if (options_.weight_granularity != "layer" && options_.weight_granularity != "neuron")
    throw InvalidArgument("[retrain] weight granularity must be layer or neuron, got '" +
                          options_.weight_granularity + "'");
  if (options_.round_lr_schedule != "constant" && options_.round_lr_schedule != "cosine")
    throw InvalidArgument("[retrain] round learning-rate schedule must be constant or cosine, got '" +
                          options_.round_lr_schedule + "'");
  if (options_.pull_steps < 1 || options_.probe_samples < 1 || options_.rows_per_group < 1)
    throw InvalidArgument("[retrain] pull steps, probe samples and rows per group must be >= 1");
  if (strategy_.regularizer != "none") {
    RegularizerOptions r = options_.regularizer;
    r.seed = derive_seed(options_.seed, "regularizer");
    r.collective = options_.collective;
    regularizer_ = make_regularizer(strategy_.regularizer, r);
    if (lambda_ == RetrainOptions::kDefaultLambda) lambda_ = strategy_lambda(strategy_);
    else if (lambda_ < 0.0f && lambda_ != RetrainOptions::kAutoLambda)
      throw InvalidArgument("[retrain] lambda must be >= 0 (or auto), got " + std::to_string(lambda_));
  } else {
    lambda_ = 0.0f;
  }
  if (strategy_.samples_from_bandit()) {
    samples_ = std::make_unique<bandits::SampleSelector>(
        bandits::make_policy(strategy_.sample_policy(), {{"seed", static_cast<double>(derive_seed(options_.seed, "bandit.samples") >> 11)}}),
        derive_seed(options_.seed, "bandit.samples.draws"));
  }
  if (strategy_.weights != "all") {
    // The output layer stays open every round and counts toward the budget: a class that
    // arrives in this chunk can only be learned through its own output row.
    const std::vector<Parameter*> params = model_.parameters();
    std::vector<Parameter*> head;
    for (size_t l = model_.size(); l-- > 0 && head.empty();) head = model_.layer(l).parameters();
    int64_t head_numel = 0;
    for (Parameter* p : head) head_numel += p->value.numel();
    std::vector<bandits::ParameterInfo> infos;
    for (size_t i = 0; i < params.size(); ++i)
      if (std::find(head.begin(), head.end(), params[i]) == head.end()) {
        selectable_.push_back(i);
        infos.push_back({params[i]->name, params[i]->value.shape(), ""});
      }
    const double total = static_cast<double>(model_.parameter_count());
    const double left = options_.weight_budget * total - static_cast<double>(head_numel);
    if (infos.empty() || left <= 0.0)
      throw InvalidArgument("[retrain] a weight budget of " + std::to_string(options_.weight_budget) +
                            " does not cover the output layer (" + std::to_string(head_numel) + " of " +
                            std::to_string(model_.parameter_count()) + " weights); raise --weight-budget");
    const std::string policy = strategy_.weights_from_bandit() ? strategy_.weight_policy() : "uniform";
    bandits::WeightSelectorOptions wo;
    wo.rows_per_group = options_.weight_granularity == "layer" ? 0 : options_.rows_per_group;
    wo.seed = derive_seed(options_.seed, "weights.rows");
    wo.budget_fraction = std::min(1.0, left / (total - static_cast<double>(head_numel)));
    weights_ = std::make_unique<bandits::WeightSelector>(
        std::move(infos),
        bandits::make_policy(policy, {{"seed", static_cast<double>(derive_seed(options_.seed, "bandit.weights") >> 11)}}),
        wo);
  }
}

Retrainer::~Retrainer() = default;

void Retrainer::adopt_base(const StreamChunk& chunk) {
  if (!seen_.empty()) throw InvalidArgument("[retrain] adopt_base runs once, before the first round");
  seen_.push_back(SeenChunk{chunk.name, copy_of(chunk.validation), &chunk.train});
  make_memory(chunk.train.sample_shape());
  if (regularizer_) {
    // The base was trained before this Retrainer existed, so SI saw no trajectory: its first Ω is
    // 0 (the estimators that read data — EWC, MAS, SNI — are unaffected).
    regularizer_->begin_task(model_);
    regularizer_->consolidate(model_, chunk.train);
  }
  remember(chunk, 0);
}

void Retrainer::make_memory(const Shape& sample_shape) {
  // The model's class count, not the chunk's: a chunk may not hold every class yet.
  Shape input{1};
  input.insert(input.end(), sample_shape.begin(), sample_shape.end());
  const int32_t classes = static_cast<int32_t>(model_.output_shape(input).back());
  memory_ = std::make_unique<ReplayMemory>(
      ReplayMemoryOptions{uses_memory(strategy_) ? options_.memory : 0, options_.memory_grouping,
                          options_.memory_clusters, derive_seed(options_.seed, "memory")},
      sample_shape, classes);
}

std::vector<const Dataset*> Retrainer::seen_validation_parts() const {
  std::vector<const Dataset*> parts;
  for (const SeenChunk& c : seen_) parts.push_back(&c.validation);
  return parts;
}

double Retrainer::validation_accuracy(const Dataset* extra) {
  std::vector<const Dataset*> parts = seen_validation_parts();
  if (extra) parts.push_back(extra);
  Context* cuda = options_.cuda;
  if (cuda) model_.to(Device::CUDA, *cuda);
  const double accuracy = mean_accuracy(model_, parts, cuda, options_.collective);
  if (cuda) model_.to(Device::CPU, *cuda);
  return accuracy;
}

void Retrainer::remember(const StreamChunk& chunk, int64_t index) {
  if (memory_->capacity() == 0) return;
  // Cluster grouping embeds samples by the penultimate activations of the model as it is now.
  memory_->add(chunk.train, index, [this](const Tensor& x) {
    Tensor h = x.clone();
    for (size_t i = 0; i + 1 < model_.size(); ++i) h = model_.layer(i).forward(h, false);
    return h;
  });
  if (strategy_.distill <= 0.0f) return;
  // The logits of the samples that just entered (the model as this round left it), NaN for the
  // classes it has not been trained on yet (distillation.h); those of evicted samples go.
  const Dataset& stored = memory_->dataset();
  std::vector<bool> trained_on;
  auto mark = [&](const std::vector<int32_t>& labels) {
    for (const int32_t c : labels) {
      if (static_cast<size_t>(c) >= trained_on.size()) trained_on.resize(static_cast<size_t>(c) + 1, false);
      trained_on[static_cast<size_t>(c)] = true;
    }
  };
  mark(stored.labels);
  mark(chunk.train.labels);
  for (const SeenChunk& c : seen_) mark(c.validation.labels);
  std::map<int64_t, std::vector<float>> kept;
  std::vector<int64_t> fresh;
  for (int64_t r = 0; r < stored.size(); ++r) {
    const int64_t id = memory_->arrival_of(r);
    auto it = memory_logits_.find(id);
    if (it != memory_logits_.end()) kept.emplace(id, std::move(it->second));
    else fresh.push_back(r);
  }
  if (fresh.empty()) {
    memory_logits_ = std::move(kept);
    return;
  }
  // Data parallel: each rank runs its share of the new entries and the ranks sum their logits into
  // place (zeros elsewhere: the sums are exact), so every rank stores the same logits.
  Collective* const collective = options_.collective;
  const bool parallel = is_parallel(collective);
  const int64_t entries = static_cast<int64_t>(fresh.size());
  const RankShare mine = parallel ? rank_share(entries, collective->rank(), collective->size()) : RankShare{0, entries};
  std::vector<float> logits_of_mine;
  int64_t classes = 0;
  for (int64_t start = mine.begin; start < mine.end; start += 1000) {
    const std::vector<int64_t> rows(fresh.begin() + start, fresh.begin() + std::min(mine.end, start + 1000));
    const Tensor logits = model_.forward(mixed_batch(stored, rows, stored, {}).x);  // on the host, dropout off
    classes = logits.dim(1);
    logits_of_mine.insert(logits_of_mine.end(), logits.data(), logits.data() + logits.numel());
  }
  std::vector<float> logits = std::move(logits_of_mine);  // [entries, classes]
  if (parallel) {
    double known[2] = {static_cast<double>(classes), mine.size() > 0 ? 1.0 : 0.0};  // ranks with a share know it
    collective->all_reduce_sum(known, 2);
    classes = static_cast<int64_t>(std::llround(known[0] / known[1]));
    std::vector<float> all(static_cast<size_t>(entries * classes), 0.0f);
    std::copy(logits.begin(), logits.end(), all.begin() + mine.begin * classes);
    collective->all_reduce_sum(all.data(), static_cast<int64_t>(all.size()));
    logits = std::move(all);
  }
  for (int64_t i = 0; i < entries; ++i) {
    const float* z = logits.data() + i * classes;
    std::vector<float> row(z, z + classes);
    for (int64_t c = 0; c < classes; ++c)
      if (static_cast<size_t>(c) >= trained_on.size() || !trained_on[static_cast<size_t>(c)])
        row[static_cast<size_t>(c)] = std::numeric_limits<float>::quiet_NaN();
    kept.emplace(memory_->arrival_of(fresh[static_cast<size_t>(i)]), std::move(row));
  }
  memory_logits_ = std::move(kept);
}

Tensor Retrainer::stored_logits(const std::vector<int64_t>& rows) const {
  const int64_t classes = memory_logits_.empty() ? 0 : static_cast<int64_t>(memory_logits_.begin()->second.size());
  Tensor out = Tensor::empty({static_cast<int64_t>(rows.size()), classes});
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::vector<float>& z = memory_logits_.at(memory_->arrival_of(rows[i]));
    std::copy(z.begin(), z.end(), out.data() + static_cast<int64_t>(i) * classes);
  }
  return out;
}

Dataset Retrainer::seen_validation() const {
  std::vector<const Dataset*> parts;
  for (const SeenChunk& c : seen_)
    if (c.validation.size()) parts.push_back(&c.validation);
  Rng rng(derive_seed(options_.seed, "probe") + static_cast<uint64_t>(rounds_));
  return stratified_subset(parts, options_.reward_gradient_samples, rng);
}

int64_t Retrainer::choose_weights(nlohmann::json& choices) {
  const std::vector<Parameter*> params = model_.parameters();
  if (!weights_) {
    model_.open_all();
    choices["weights"] = {{"open", "all"}};
    return model_.parameter_count();
  }
  // Ω per row (the mean over the row), when the regularizer has one.
  // Indexed like the selector's parameters (selectable_).
  std::vector<std::vector<double>> row_omega(selectable_.size());
  bool have_omega = false;
  for (size_t i = 0; i < selectable_.size(); ++i) {
    const Parameter& p = *params[selectable_[i]];
    if (!p.omega.defined()) continue;
    have_omega = true;
    const int64_t rows = p.rows(), len = p.row_length();
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t k = 0; k < len; ++k) s += p.omega.data()[r * len + k];
      row_omega[i].push_back(s / static_cast<double>(std::max<int64_t>(1, len)));
    }
  }
  std::vector<UpdateMask> masks;
  const auto& groups = weights_->groups();
  if (strategy_.weights_from_bandit()) {
    // Inside an oversize group the least important rows open first (they cost the penalty least).
    if (have_omega)
      for (size_t i = 0; i < selectable_.size(); ++i)
        if (!row_omega[i].empty()) {
          std::vector<double> priority;
          for (const double o : row_omega[i]) priority.push_back(-o);
          weights_->set_row_priority(i, std::move(priority));
        }
    masks = weights_->select();
  } else {
    std::vector<bandits::ArmId> order;
    for (const auto& g : groups) order.push_back(g.id);
    std::vector<int64_t> shuffled(order.begin(), order.end());
    shuffle_indices(shuffled, weight_order_rng_);
    order.assign(shuffled.begin(), shuffled.end());
    if (strategy_.weights == "importance" && have_omega) {
      std::vector<double> mean(groups.size(), 0.0);
      for (const auto& g : groups) {
        const std::vector<double>& ro = row_omega[g.parameter];
        if (ro.empty()) continue;
        double s = 0.0;
        for (int64_t r = g.row_begin; r < g.row_end; ++r) s += ro[static_cast<size_t>(r)];
        mean[static_cast<size_t>(g.id)] = s / static_cast<double>(g.row_end - g.row_begin);
      }
      std::stable_sort(order.begin(), order.end(), [&](bandits::ArmId a, bandits::ArmId b) {
        return mean[static_cast<size_t>(a)] < mean[static_cast<size_t>(b)];
      });
    }
    masks = weights_->select_in_order(order);
  }
  model_.open_all();  // the output layer; the selector's parameters get their masks below
  for (size_t k = 0; k < selectable_.size(); ++k) params[selectable_[k]]->mask = masks[k];
  int64_t open = 0;
  for (Parameter* p : params) open += p->mask.count(p->value.numel(), p->rows());
  choices["weights"] = {{"budget", options_.weight_budget},
                        {"granularity", options_.weight_granularity},
                        {"open_fraction", static_cast<double>(open) / static_cast<double>(model_.parameter_count())},
                        {"groups_opened", weights_->opened().size()},
                        {"groups", groups.size()}};
  return open;
}

void Retrainer::reward_weights(const std::vector<Tensor>& grad, const std::vector<Tensor>& before) {
  const std::vector<Parameter*> params = model_.parameters();
  // The bias "<p>.bias" moves with the rows of "<p>.weight": its share counts toward the same group.
  std::vector<int> follower(params.size(), -1);
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& n = params[i]->name;
    if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0)
      for (size_t j = 0; j < params.size(); ++j)
        if (params[j]->name == n.substr(0, n.size() - 7) + ".bias" && params[j]->rows() == params[i]->rows())
          follower[i] = static_cast<int>(j);
  }
  auto share = [&](size_t i, int64_t row) {
    const int64_t len = params[i]->row_length();
    const float* g = grad[i].data() + row * len;
    const float* a = before[i].data() + row * len;
    const float* b = params[i]->value.data() + row * len;
    double s = 0.0;
    for (int64_t k = 0; k < len; ++k) s -= static_cast<double>(g[k]) * (static_cast<double>(b[k]) - a[k]);
    return s;
  };
  std::map<bandits::ArmId, double> rewards;
  for (const auto& g : weights_->opened()) {
    const size_t i = selectable_[g.parameter];
    double r = 0.0;
    for (const int64_t row : g.rows) {
      r += share(i, row);
      if (follower[i] >= 0) r += share(static_cast<size_t>(follower[i]), row);
    }
    rewards[g.id] = r;
  }
  weights_->update(rewards);
}

int64_t Retrainer::round_steps(const StreamChunk& chunk) const {
  int64_t n = chunk.train.size();
  if (strategy_.samples == "all") {
    n = 0;
    for (const SeenChunk& c : seen_) n += c.train ? c.train->size() : 0;
  }
  return options_.epochs * ((n + options_.batch_size - 1) / options_.batch_size);
}

void Retrainer::train_round(const StreamChunk& chunk, float lambda, int64_t max_steps, nlohmann::json& choices,
                            RoundCompute& compute) {
  const uint64_t round_seed = static_cast<uint64_t>(rounds_);
  auto optimizer = make_optimizer(options_.optimizer);
  optimizer->set_penalty_strength(regularizer_ ? lambda : 0.0f);
  if (regularizer_) regularizer_->begin_task(model_);
  Context* cuda = options_.cuda;
  if (cuda) model_.to(Device::CUDA, *cuda);
  StepScratch scratch;
  Collective* const parallel = is_parallel(options_.collective) ? options_.collective : nullptr;
  std::vector<float> flat;  // the data-parallel all-reduce buffer
  int64_t step_bytes = 0;   // what the data-parallel steps all-reduced (per rank)
  ComputeCounts step_counts;
  int64_t samples = 0, step = 0;
  auto where = [&] {
    return "[retrain] round " + std::to_string(rounds_) + " (" + chunk.name + "), step " + std::to_string(step);
  };
  const int64_t total_steps = max_steps >= 0 ? std::min(max_steps, round_steps(chunk)) : round_steps(chunk);
  const LearningRateSchedule schedule{options_.round_lr_schedule, options_.optimizer.lr, total_steps};
  // replayed: the memory positions of the batch's last rows (distilled when strategy_.distill > 0).
  auto run_step = [&](const Batch& batch, const std::vector<int64_t>& replayed = {}) {
    optimizer->set_learning_rate(schedule.at(step));
    const ComputeCounts before = model_.compute_counts();
    // Data parallel: every rank builds the same global batch (same seeds, same memory) and takes
    // its share of it; the bandits read only all-reduced numbers, so they choose alike on every rank.
    const int64_t bytes_before = parallel ? parallel->bytes_all_reduced() : 0;
    const bool distilled = strategy_.distill > 0.0f && !replayed.empty();
    LogitTerm distill_term;  // data parallel: each rank matches the replayed rows of its share
    if (parallel && distilled)
      distill_term = [stored = std::make_shared<const Tensor>(stored_logits(replayed)), weight = strategy_.distill](
                         const Tensor& logits, int64_t begin, int64_t rows, double grad_scale, Tensor& grad) {
        return add_logit_matching_share(logits, begin, rows, *stored, weight, grad_scale, grad);
      };
    const double loss =
        parallel    ? train_step_data_parallel(model_, *optimizer, batch, *parallel, scratch, flat, distill_term)
        : distilled ? distilled_train_step(model_, *optimizer, batch, stored_logits(replayed), strategy_.distill, cuda, scratch)
                    : train_step(model_, *optimizer, batch, cuda, &scratch);
    if (parallel) step_bytes += parallel->bytes_all_reduced() - bytes_before;
    step_counts += model_.compute_counts() - before;
    if (!std::isfinite(loss)) {
      std::ostringstream msg;
      msg << "[retrain] loss is " << loss << " at round " << rounds_ << " (" << chunk.name << "), step " << step + 1
          << ": training diverged (try a smaller --lr or --lambda)";
      throw NonFiniteError(msg.str());
    }
    samples += batch.size();
    if (max_steps < 0)
      for (const int32_t y : batch.y) {
        const size_t c = static_cast<size_t>(y);
        if (round_label_counts_.size() <= c) round_label_counts_.resize(c + 1, 0);
        ++round_label_counts_[c];
      }
    ++step;
    // A finite loss does not prove finite weights (a NaN row behind a ReLU reads as 0): the
    // entries this step updated must be finite before the next step, a probe or the bandits read
    // them. On a CUDA context they are checked once the round is back on the host (below).
    if (!cuda) {
      const NonFiniteEntry bad = find_nonfinite(model_, true);
      if (bad.parameter) throw_nonfinite(bad, where());
    }
  };

  if (strategy_.samples == "new" || strategy_.samples == "all") {
    std::vector<const Dataset*> parts;
    if (strategy_.samples == "all")
      for (const SeenChunk& c : seen_) {
        // A restored Retrainer (a served model directory) keeps only the memory of past chunks.
        if (!c.train)
          throw InvalidArgument("[retrain] samples=all retrains on every past chunk, but chunk '" + c.name +
                                "' is no longer at hand (a restored model keeps only its replay memory)");
        parts.push_back(c.train);
      }
    const Dataset everything = parts.empty() ? Dataset() : concatenate(parts, "everything seen");
    const Dataset& data = parts.empty() ? chunk.train : everything;
    Batcher batches(data, BatcherOptions{options_.batch_size, true, false},
                    Rng(derive_seed(options_.seed, "batches") + round_seed));
    for (int e = 0; e < options_.epochs && step != max_steps; ++e) {
      Batch batch;
      while (step != max_steps && batches.next(batch)) run_step(batch);
    }
    choices["samples"] = {{"from", strategy_.samples}, {"pool", data.size()}};
  } else {
    const Dataset& memory = memory_->dataset();
    const int64_t m = memory.size();
    const int64_t replay_part =
        m > 0 && options_.replay_fraction > 0.0
            ? std::max<int64_t>(1, static_cast<int64_t>(std::lround(options_.replay_fraction * options_.batch_size)))
            : 0;
    const int64_t new_part = std::max<int64_t>(1, options_.batch_size - replay_part);
    const int64_t n = chunk.train.size();
    int64_t steps = options_.epochs * ((n + options_.batch_size - 1) / options_.batch_size);
    if (max_steps >= 0) steps = std::min(steps, max_steps);
    Batcher fresh(chunk.train, BatcherOptions{new_part, true, false}, Rng(derive_seed(options_.seed, "batches") + round_seed));
    Rng draws(derive_seed(options_.seed, "replay.draws") + round_seed);
    auto next_fresh = [&] {
      Batch b;
      if (!fresh.next(b)) fresh.next(b);
      return b.indices;
    };
    // With nothing to replay (an empty memory, --memory 0 or --replay-fraction 0) the sample bandit
    // has no choice to make: the steps take new data only.
    if (strategy_.samples == "replay" || replay_part == 0) {
      for (int64_t s = 0; s < steps; ++s) {
        const std::vector<int64_t> mine = next_fresh();
        const std::vector<int64_t> replayed = m ? draw_distinct(m, replay_part, draws) : std::vector<int64_t>{};
        run_step(mixed_batch(chunk.train, mine, memory, replayed), replayed);
      }
      choices["samples"] = {{"from", "replay"}, {"memory", m}, {"replay_per_step", replay_part}};
    } else {
      // Arms: the memory's groups and the new chunk; members are positions in memory, or
      // kNewDataArm for the chunk. Members change every round, so the groups are set anew (their
      // statistics restart; the policy's clock and state carry over).
      const std::vector<bandits::ArmId> live = samples_->policy().arms();  // remove_group edits that list
      for (const bandits::ArmId id : live) samples_->remove_group(id);
      for (const int64_t g : memory_->group_ids()) samples_->add_group(g, memory_->group_members(g));
      std::vector<int64_t> everything(static_cast<size_t>(n));
      std::iota(everything.begin(), everything.end(), int64_t{0});
      samples_->add_group(kNewDataArm, everything);
      std::vector<const Dataset*> parts;
      for (const SeenChunk& c : seen_)
        if (c.validation.size()) parts.push_back(&c.validation);
      Rng probe_rng(derive_seed(options_.seed, "probe") + round_seed);
      const Dataset probe = stratified_subset(parts, options_.probe_samples, probe_rng);
      double probe_loss = evaluate(model_, probe, 1000, cuda, options_.collective).loss;
      std::map<bandits::ArmId, int64_t> pulls;
      // The pulled arm supplies bandit_share of the replay part; the rest is uniform over the memory,
      // so every stored group stays in every batch (what keeps a class-incremental model's old
      // classes alive) and the bandit decides where the emphasis goes.
      const int64_t pulled_part = std::max<int64_t>(1, std::lround(options_.bandit_share * static_cast<double>(replay_part)));
      const int64_t uniform_part = replay_part - pulled_part;
      for (int64_t s = 0; s < steps;) {
        const bandits::SampleSelector::Minibatch pick = samples_->select(static_cast<size_t>(pulled_part));
        ++pulls[pick.group];
        const std::vector<int64_t>& members = samples_->group(pick.group);
        for (int k = 0; k < options_.pull_steps && s < steps; ++k, ++s) {
          std::vector<int64_t> chosen;
          if (k == 0) chosen = pick.indices;
          else
            for (const int64_t i : draw_distinct(static_cast<int64_t>(members.size()), pulled_part, draws))
              chosen.push_back(members[static_cast<size_t>(i)]);
          std::vector<int64_t> mine = next_fresh();
          if (pick.group == kNewDataArm) {
            mine.insert(mine.end(), chosen.begin(), chosen.end());
            chosen.clear();
          }
          // A group smaller than its share of the batch: the rest comes from the new chunk.
          for (int64_t extra = pulled_part - static_cast<int64_t>(pick.group == kNewDataArm ? pulled_part : chosen.size());
               extra > 0; --extra)
            mine.push_back(static_cast<int64_t>(draws.below(static_cast<uint64_t>(n))));
          for (const int64_t i : draw_distinct(m, uniform_part, draws)) chosen.push_back(i);
          run_step(mixed_batch(chunk.train, mine, memory, chosen), chosen);
        }
        const double after = evaluate(model_, probe, 1000, cuda, options_.collective).loss;
        samples_->update(probe_loss - after);
        probe_loss = after;
      }
      nlohmann::json arm_pulls = nlohmann::json::object();
      for (const auto& [arm, count] : pulls)
        arm_pulls[arm == kNewDataArm ? std::string("new") : "memory-" + std::to_string(arm)] = count;
      choices["samples"] = {{"from", strategy_.samples}, {"memory", m}, {"replay_per_step", replay_part},
                            {"pulled_per_step", pulled_part},
                            {"pulls", arm_pulls}, {"probe", probe.size()}};
    }
  }
  if (cuda) {
    model_.to(Device::CPU, *cuda);
    const NonFiniteEntry bad = find_nonfinite(model_, true);
    if (bad.parameter) throw_nonfinite(bad, where() + " (the round's last; checked on the host after it)");
  }
  sum_over_ranks(options_.collective, step_counts);
  if (parallel && step > 0)
    choices["data_parallel"] = {{"ranks", parallel->size()}, {"steps", step}, {"bytes_all_reduced_per_step", step_bytes / step}};
  compute.samples += samples;
  compute.forward_flops += step_counts.forward_flops;
  compute.input_grad_flops += step_counts.input_grad_flops;
  compute.weight_grad_flops += step_counts.weight_grad_flops;
}

namespace {

// The output layer's parameters: the last rank-2 "*.weight" (one row per class) and the parameter
// after it when that is its rank-1 bias; nulls where there is none.
std::pair<Parameter*, Parameter*> output_layer(Sequential& model) {
  const std::vector<Parameter*> params = model.parameters();
  for (size_t i = params.size(); i-- > 0;) {
    const std::string& name = params[i]->name;
    if (params[i]->value.shape().size() == 2 && name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      Parameter* bias = i + 1 < params.size() && params[i + 1]->value.shape().size() == 1 ? params[i + 1] : nullptr;
      return {params[i], bias};
    }
  }
  return {nullptr, nullptr};
}

}  // namespace

double align_new_class_weights(Sequential& model, const std::vector<int32_t>& old_classes,
                               const std::vector<int32_t>& new_classes) {
  Parameter* out = output_layer(model).first;
  if (!out) throw InvalidArgument("[retrain] weight aligning needs an output layer with a rank-2 weight");
  const int64_t rows = out->value.shape()[0], cols = out->value.shape()[1];
  float* w = out->value.data();
  auto mean_norm = [&](const std::vector<int32_t>& classes) {
    double sum = 0.0;
    for (const int32_t c : classes) {
      if (c < 0 || c >= rows)
        throw InvalidArgument("[retrain] weight aligning: class " + std::to_string(c) + " outside the output layer's " +
                              std::to_string(rows) + " rows");
      double sq = 0.0;
      for (int64_t j = 0; j < cols; ++j) sq += static_cast<double>(w[c * cols + j]) * w[c * cols + j];
      sum += std::sqrt(sq);
    }
    return classes.empty() ? 0.0 : sum / static_cast<double>(classes.size());
  };
  const double old_norm = mean_norm(old_classes), new_norm = mean_norm(new_classes);
  if (old_classes.empty() || new_classes.empty() || old_norm <= 0.0 || new_norm <= 0.0) return 1.0;
  const double gamma = old_norm / new_norm;
  for (const int32_t c : new_classes)
    for (int64_t j = 0; j < cols; ++j) w[c * cols + j] = static_cast<float>(w[c * cols + j] * gamma);
  return gamma;
}

namespace {

// The classes a data set's labels name, sorted.
std::set<int32_t> classes_of(const Dataset& data) { return {data.labels.begin(), data.labels.end()}; }

}  // namespace

void Retrainer::align_output_layer(const StreamChunk& chunk, nlohmann::json& choices) {
  std::set<int32_t> old_classes;
  for (size_t i = 0; i + 1 < seen_.size(); ++i) {  // every chunk before this round's (the last one)
    const std::set<int32_t> c = classes_of(seen_[i].train ? *seen_[i].train : seen_[i].validation);
    old_classes.insert(c.begin(), c.end());
  }
  std::vector<int32_t> fresh;
  for (const int32_t c : classes_of(chunk.train))
    if (!old_classes.count(c)) fresh.push_back(c);
  const double gamma = align_new_class_weights(model_, {old_classes.begin(), old_classes.end()}, fresh);
  choices["weight_aligning"] = {{"new_classes", fresh}, {"gamma", gamma}};
}

std::vector<float> prior_correction_shift(const std::vector<double>& seen, const std::vector<double>& trained) {
  if (seen.size() != trained.size())
    throw InvalidArgument("[retrain] prior correction: " + std::to_string(seen.size()) + " seen counts but " +
                          std::to_string(trained.size()) + " trained counts");
  double seen_total = 0.0, trained_total = 0.0;
  for (size_t c = 0; c < seen.size(); ++c) {
    seen_total += seen[c] + 1.0;
    trained_total += trained[c] + 1.0;
  }
  std::vector<float> shift(seen.size(), 0.0f);
  for (size_t c = 0; c < seen.size(); ++c)
    if (seen[c] > 0.0)
      shift[c] = static_cast<float>(std::log((seen[c] + 1.0) / seen_total) - std::log((trained[c] + 1.0) / trained_total));
  return shift;
}

void Retrainer::correct_prior(const StreamChunk& chunk, nlohmann::json& choices) {
  Parameter* bias = output_layer(model_).second;
  if (!bias) throw InvalidArgument("[retrain] prior correction needs an output layer with a bias");
  if (round_label_counts_.empty()) return;
  // Only rounds that bring a class never seen before (in the earlier chunks' validation parts, which
  // a served model keeps too): their new classes fill the new half of every batch, far above their
  // share of the stream. Rounds without one train on a mix close to the stream's, where the
  // correction gained nothing (permuted) or lost (drift) on validation data (apps/trainer/README.md).
  std::set<int32_t> earlier, fresh;
  for (size_t i = 0; i + 1 < seen_.size(); ++i)
    earlier.insert(seen_[i].validation.labels.begin(), seen_[i].validation.labels.end());
  for (const int32_t y : chunk.train.labels)
    if (!earlier.count(y)) fresh.insert(y);
  choices["prior_correction"] = {{"new_classes", std::vector<int32_t>(fresh.begin(), fresh.end())}, {"tau", 0.0}};
  if (fresh.empty()) return;
  const size_t classes = static_cast<size_t>(bias->value.numel());
  std::vector<double> seen(classes, 0.0), trained(classes, 0.0);
  std::vector<const Dataset*> parts;
  for (const SeenChunk& c : seen_) {
    for (const int32_t y : c.validation.labels)
      if (static_cast<size_t>(y) < classes) seen[static_cast<size_t>(y)] += 1.0;
    if (c.validation.size()) parts.push_back(&c.validation);
  }
  for (size_t c = 0; c < classes && c < round_label_counts_.size(); ++c)
    trained[c] = static_cast<double>(round_label_counts_[c]);
  const std::vector<float> shift = prior_correction_shift(seen, trained);  // τ = 1
  if (parts.empty()) return;
  static const std::vector<float> taus{0.0f, 0.25f, 0.5f, 0.75f, 1.0f};
  std::vector<std::vector<float>> offsets;
  for (const float tau : taus) {
    offsets.emplace_back(classes);
    for (size_t c = 0; c < classes; ++c) offsets.back()[c] = tau * shift[c];
  }
  Rng rng(derive_seed(options_.seed, "prior.probe") + static_cast<uint64_t>(rounds_));
  const Dataset probe = stratified_subset(parts, options_.prior_probe_samples, rng);
  const std::vector<double> accuracy = accuracy_with_logit_offsets(model_, probe, offsets, 1000, options_.collective);
  size_t best = 0;
  for (size_t i = 1; i < taus.size(); ++i)
    if (accuracy[i] > accuracy[best]) best = i;
  float* b = bias->value.data();
  for (size_t c = 0; c < classes; ++c) b[c] += offsets[best][c];
  nlohmann::json tried = nlohmann::json::object();
  for (size_t i = 0; i < taus.size(); ++i) tried[std::to_string(taus[i]).substr(0, 4)] = accuracy[i];
  choices["prior_correction"]["tau"] = taus[best];
  choices["prior_correction"]["validation_accuracy"] = tried;
  choices["prior_correction"]["probe"] = probe.size();
}

RoundRecord Retrainer::round(const StreamChunk& chunk, const std::vector<StreamChunk>& stream) {
  return round(chunk, &stream);
}

RoundRecord Retrainer::round(const StreamChunk& chunk) { return round(chunk, nullptr); }

RoundRecord Retrainer::round(const StreamChunk& chunk, const std::vector<StreamChunk>* stream) {
  const auto start = Clock::now();
  reset_peak_rss();
  if (seen_.empty()) throw InvalidArgument("[retrain] adopt_base must run before the first round");
  if (chunk.train.size() == 0) throw InvalidArgument("[retrain] chunk '" + chunk.name + "' has no training samples");
  seen_.push_back(SeenChunk{chunk.name, copy_of(chunk.validation), &chunk.train});
  ++rounds_;
  RoundRecord record;
  record.round = rounds_;
  record.chunk = chunk.name;
  const ComputeCounts before = model_.compute_counts();
  round_label_counts_.clear();

  record.compute.parameters_updated = choose_weights(record.choices);
  const std::vector<Parameter*> params = model_.parameters();
  std::vector<Tensor> grad, start_values;
  if (weights_ && strategy_.weights_from_bandit()) {
    grad = validation_gradient(model_, seen_validation(), options_.collective);
    start_values = parameter_values(model_);
  }

  const auto train_start = Clock::now();
  if (regularizer_ && lambda_ == RetrainOptions::kAutoLambda) {
    // λ auto: every candidate trains this round from the same start; the best on validation stays.
    RoundStart s0{parameter_values(model_), {}, samples_ ? samples_->save_state() : nlohmann::json()};
    for (Parameter* p : params) s0.path_integrals.push_back(p->path_integral.defined() ? p->path_integral.clone() : Tensor());
    auto restore = [&](const RoundStart& s) {
      for (size_t i = 0; i < params.size(); ++i) {
        params[i]->value.copy_from(s.values[i]);
        if (s.path_integrals[i].defined()) params[i]->path_integral.copy_from(s.path_integrals[i]);
      }
      if (samples_) samples_->load_state(s.samples);
    };
    // Each candidate trains a pilot (the first pilot_fraction of the round's steps) from the same
    // start; the round then trains in full, once, with the best.
    const int64_t pilot_steps = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(options_.lambda_pilot_fraction * static_cast<double>(round_steps(chunk)))));
    double best_accuracy = -1.0;
    float best_lambda = 0.0f;
    nlohmann::json tried = nlohmann::json::object();
    for (const float candidate : lambda_grid(strategy_lambda(strategy_))) {
      restore(s0);
      nlohmann::json ignored;
      train_round(chunk, candidate, pilot_steps, ignored, record.compute);
      const double accuracy = mean_accuracy(model_, seen_validation_parts(), nullptr, options_.collective);
      std::ostringstream key;
      key << candidate;
      tried[key.str()] = accuracy;
      if (accuracy > best_accuracy) {
        best_accuracy = accuracy;
        best_lambda = candidate;
      }
    }
    restore(s0);
    lambda_ = best_lambda;
    train_round(chunk, lambda_, -1, record.choices, record.compute);
    record.choices["lambda_auto"] = {{"pilot_steps", pilot_steps}, {"validation_accuracy", tried}, {"chosen", best_lambda}};
  } else {
    train_round(chunk, lambda_, -1, record.choices, record.compute);
  }
  record.compute.train_seconds = seconds_since(train_start);
  record.lambda = regularizer_ ? lambda_ : 0.0f;
  if (!grad.empty()) reward_weights(grad, start_values);
  model_.open_all();
  if (options_.align_new_classes) align_output_layer(chunk, record.choices);
  // Before consolidation: θ* and the memory's stored logits are those of the model served.
  if (strategy_.prior_correction) correct_prior(chunk, record.choices);

  if (regularizer_) regularizer_->consolidate(model_, chunk.train);
  remember(chunk, rounds_);
  // Everything the layers ran this round that was not a training step.
  ComputeCounts all = model_.compute_counts() - before;
  sum_over_ranks(options_.collective, all);
  record.compute.other_flops = all.total() - record.compute.forward_flops - record.compute.input_grad_flops -
                               record.compute.weight_grad_flops;

  if (stream) {
    evaluate_round(model_, *stream, static_cast<size_t>(rounds_), options_.cuda, options_.collective, record);
  } else {
    // No stream to report on (a served model's round): the chunk's own test part, and validation.
    Context* cuda = options_.cuda;
    if (cuda) model_.to(Device::CUDA, *cuda);
    record.test_accuracy = {evaluate(model_, chunk.test, 1000, cuda, options_.collective).accuracy};
    record.validation_accuracy = mean_accuracy(model_, seen_validation_parts(), cuda, options_.collective);
    if (cuda) model_.to(Device::CPU, *cuda);
  }
  record.compute.round_seconds = seconds_since(start);
  record.compute.peak_rss_bytes = peak_rss_bytes();
  return record;
}

Retrainer::SavedState Retrainer::save_state() const {
  if (!memory_) throw InvalidArgument("[retrain] nothing to save before adopt_base");
  SavedState out;
  nlohmann::json seen = nlohmann::json::array();
  for (size_t i = 0; i < seen_.size(); ++i) {
    seen.push_back({{"name", seen_[i].name}, {"validation_samples", seen_[i].validation.size()}});
    const std::string prefix = "nnr.validation." + std::to_string(i);
    out.tensors.emplace_back(prefix + ".features", seen_[i].validation.features.clone());
    out.tensors.emplace_back(prefix + ".labels", labels_as_tensor(seen_[i].validation.labels));
  }
  const Dataset& stored = memory_->dataset();
  if (stored.size() > 0) {
    out.tensors.emplace_back("nnr.memory.features", stored.features.clone());
    out.tensors.emplace_back("nnr.memory.labels", labels_as_tensor(stored.labels));
    if (strategy_.distill > 0.0f) {
      std::vector<int64_t> all(static_cast<size_t>(stored.size()));
      std::iota(all.begin(), all.end(), int64_t{0});
      // In memory order; checkpoints hold finite values only, so the classes not matched (NaN,
      // distillation.h) are a 0 in a mask beside the logits.
      Tensor logits = stored_logits(all);
      Tensor matched = Tensor::empty(logits.shape());
      for (int64_t i = 0; i < logits.numel(); ++i) {
        const bool nan = std::isnan(logits.data()[i]);
        matched.data()[i] = nan ? 0.0f : 1.0f;
        if (nan) logits.data()[i] = 0.0f;
      }
      out.tensors.emplace_back("nnr.memory.logits", std::move(logits));
      out.tensors.emplace_back("nnr.memory.logits_matched", std::move(matched));
    }
  }
  out.meta = {{"format", "nnr.retrainer"},
              {"strategy", strategy_.description()},
              {"rounds", rounds_},
              {"lambda", lambda_},
              {"regularizer_estimates", regularizer_ ? regularizer_->estimates_made() : 0},
              {"sample_bandit", samples_ ? samples_->save_state() : nlohmann::json()},
              {"weight_bandit", weights_ ? weights_->save_state() : nlohmann::json()},
              {"weight_order_rng", rng_to_json(weight_order_rng_)},
              {"memory", memory_->save_state()},
              {"sample_shape", memory_->dataset().size() ? stored.sample_shape() : seen_.front().validation.sample_shape()},
              {"seen", seen}};
  return out;
}

void Retrainer::load_state(const nlohmann::json& meta, const std::map<std::string, Tensor>& tensors) {
  if (!seen_.empty()) throw InvalidArgument("[retrain] load_state needs a fresh Retrainer");
  auto tensor = [&](const std::string& name) -> const Tensor& {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw Error("[retrain] the state has no tensor " + name);
    return it->second;
  };
  try {
    if (meta.at("format").get<std::string>() != "nnr.retrainer") throw Error("[retrain] not a retrainer state");
    if (meta.at("strategy").get<std::string>() != strategy_.description())
      throw Error("[retrain] the state was saved by strategy " + meta.at("strategy").get<std::string>() + ", not " +
                  strategy_.description());
    std::vector<SeenChunk> seen;
    const nlohmann::json& listed = meta.at("seen");
    if (!listed.is_array() || listed.empty()) throw Error("[retrain] the state lists no chunk");
    const Shape sample_shape = meta.at("sample_shape").get<Shape>();
    make_memory(sample_shape);
    for (size_t i = 0; i < listed.size(); ++i) {
      const std::string prefix = "nnr.validation." + std::to_string(i);
      const Tensor& features = tensor(prefix + ".features");
      std::vector<int32_t> labels = labels_from_tensor(tensor(prefix + ".labels"), prefix + ".labels");
      if (features.rank() < 1 || features.dim(0) != static_cast<int64_t>(labels.size()) ||
          static_cast<int64_t>(labels.size()) != listed[i].at("validation_samples").get<int64_t>())
        throw Error("[retrain] " + prefix + " does not match the state's sample count");
      Shape shape(features.shape().begin() + 1, features.shape().end());
      if (shape != sample_shape) throw Error("[retrain] " + prefix + ".features has samples of another shape");
      seen.push_back(SeenChunk{listed[i].at("name").get<std::string>(),
                               make_dataset(features.clone(), std::move(labels), 0, prefix), nullptr});
    }
    Dataset stored;
    if (tensors.count("nnr.memory.features")) {
      const Tensor& features = tensor("nnr.memory.features");
      std::vector<int32_t> labels = labels_from_tensor(tensor("nnr.memory.labels"), "nnr.memory.labels");
      stored = make_dataset(features.clone(), std::move(labels), 0, "replay memory");
    }
    memory_->load_state(meta.at("memory"), std::move(stored));
    if (strategy_.distill > 0.0f && memory_->size() > 0) {
      // Row r: the logits of memory position r, kept by the sample's arrival number.
      const Tensor& logits = tensor("nnr.memory.logits");
      const Tensor& matched = tensor("nnr.memory.logits_matched");
      if (logits.rank() != 2 || logits.dim(0) != memory_->size() || matched.shape() != logits.shape())
        throw Error("[retrain] nnr.memory.logits has shape " + shape_to_string(logits.shape()) +
                    " and its mask " + shape_to_string(matched.shape()) + ", not [" +
                    std::to_string(memory_->size()) + ", classes]");
      const int64_t classes = logits.dim(1);
      for (int64_t r = 0; r < memory_->size(); ++r) {
        std::vector<float> row(logits.data() + r * classes, logits.data() + (r + 1) * classes);
        for (int64_t c = 0; c < classes; ++c)
          if (matched.data()[r * classes + c] == 0.0f) row[static_cast<size_t>(c)] = std::numeric_limits<float>::quiet_NaN();
        memory_logits_[memory_->arrival_of(r)] = std::move(row);
      }
    }
    if (samples_) samples_->load_state(meta.at("sample_bandit"));
    if (weights_) weights_->load_state(meta.at("weight_bandit"));
    weight_order_rng_ = rng_from_json(meta.at("weight_order_rng"));
    if (regularizer_) regularizer_->set_estimates_made(meta.at("regularizer_estimates").get<uint64_t>());
    lambda_ = meta.at("lambda").get<float>();
    rounds_ = meta.at("rounds").get<int>();
    seen_ = std::move(seen);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("[retrain] malformed retrainer state: ") + e.what());
  } catch (const bandits::BanditError& e) {
    throw Error(std::string("[retrain] bandit state: ") + e.what());
  }
}

StreamReport run_stream(const std::vector<StreamChunk>& stream, const std::vector<Strategy>& strategies,
                        const StreamRunOptions& options, const RoundCallback& on_round,
                        const ModelCallback& on_model) {
  if (stream.size() < 2) throw InvalidArgument("[stream] a stream needs at least 2 chunks (a base and a round)");
  if (strategies.empty()) throw InvalidArgument("[stream] no strategy to run");
  for (const Strategy& s : strategies) validate_strategy(s);
  StreamReport report;
  report.scenario = options.scenario;
  report.data = options.data;
  report.model = options.model_spec;
  report.device = options.device;
  report.seed = options.retrain.seed;
  for (const StreamChunk& c : stream) report.chunks.push_back(c.name);

  const uint64_t init_seed = derive_seed(options.retrain.seed, "init");
  Sequential base = build_model(options.model_spec, init_seed);
  // Data parallel: every rank builds the same model from the seed; rank 0's weights make it certain.
  if (is_parallel(options.retrain.collective)) broadcast_parameters(base, *options.retrain.collective, 0);
  const RoundCompute base_compute = train_base(base, stream[0], options.retrain);
  for (const Strategy& strategy : strategies) {
    Sequential model = build_model(options.model_spec, init_seed);
    copy_parameters(base, model);
    Retrainer retrainer(std::move(model), strategy, options.retrain);
    StrategyReport sr;
    sr.strategy = strategy.name;
    sr.description = strategy.description();
    const auto adopt_start = Clock::now();
    retrainer.adopt_base(stream[0]);
    RoundRecord first;
    first.round = 0;
    first.chunk = stream[0].name;
    first.compute = base_compute;
    first.compute.round_seconds += seconds_since(adopt_start);
    evaluate_round(retrainer.model(), stream, 0, options.retrain.cuda, options.retrain.collective, first);
    sr.rounds.push_back(first);
    if (on_round) on_round(strategy.name, first);
    for (size_t i = 1; i < stream.size(); ++i) {
      sr.rounds.push_back(retrainer.round(stream[i], stream));
      if (on_round) on_round(strategy.name, sr.rounds.back());
    }
    if (on_model) on_model(strategy.name, retrainer.model());
    report.strategies.push_back(std::move(sr));
  }
  return report;
}

}  // namespace nnr
