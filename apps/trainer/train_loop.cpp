#include "apps/trainer/train_loop.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/nn/loss.h"
#include "engine/nn/tape.h"
#include "engine/ops/softmax_cross_entropy.h"

namespace nnr {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Shape with_batch(int64_t n, const Shape& sample) {
  Shape s{n};
  s.insert(s.end(), sample.begin(), sample.end());
  return s;
}

}  // namespace

float LearningRateSchedule::at(int64_t step) const {
  if (kind == "constant" || total_steps <= 0) return base_lr;
  if (kind == "cosine") {
    const double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(total_steps));
    return static_cast<float>(0.5 * base_lr * (1.0 + std::cos(3.14159265358979323846 * t)));
  }
  throw InvalidArgument("[train] unknown learning-rate schedule '" + kind + "' (valid: constant, cosine)");
}

double train_step(Sequential& model, Optimizer& optimizer, const Batch& batch, Context* cuda_context,
                  StepScratch* scratch) {
  StepScratch local;
  Tape& tape = scratch ? scratch->tape : local.tape;
  SoftmaxCrossEntropy& loss = scratch ? scratch->loss : local.loss;
  // Lives until the end of the step: the tape keeps a pointer to its input until backward.
  const Tensor device_x = cuda_context ? batch.x.to(Device::CUDA, *cuda_context) : Tensor();
  model.zero_grad();
  model.forward(cuda_context ? device_x : batch.x, tape);
  const double value = tape.apply_loss(loss, batch.y);
  if (std::isfinite(value)) {
    tape.backward();
    optimizer.step(model.parameters());
  }
  return value;
}

namespace {

// Rows [begin, end) of a host batch (x is contiguous along dimension 0).
Batch rows_of(const Batch& batch, RankShare share) {
  Batch part;
  Shape shape = batch.x.shape();
  const int64_t row = batch.size() ? batch.x.numel() / batch.size() : 0;
  shape[0] = share.size();
  part.x = Tensor::empty(shape);
  std::copy(batch.x.data() + share.begin * row, batch.x.data() + share.end * row, part.x.data());
  if (!batch.y.empty()) part.y.assign(batch.y.begin() + share.begin, batch.y.begin() + share.end);
  part.indices.assign(batch.indices.begin() + share.begin, batch.indices.begin() + share.end);
  return part;
}

// Where in a data-parallel step a test fault may strike.
enum class FaultPoint {
  Step,        // before the step
  LossSummed,  // after the loss's all-reduce, before backward and the gradients' all-reduce
  Bucket,      // right after the first gradient bucket's all-reduce was started (mid-backward)
};

// Test only: NNR_TEST_RANK_FAULT=KIND:R:K makes rank R fail in its data-parallel step K + 1 (K
// counted at each point separately): exit (R _exits before the step) or hang (R stops answering
// before it); devhang / sumhang (R stops answering after the loss's all-reduce: the device sum's
// NCCL wait, or the host buckets' wait, times out on the others); buckethang (R stops answering
// right after starting its first gradient bucket: the others' nonblocking wait times out) or
// bucketexit (R _exits there). The tests check that the other ranks end the run.
void maybe_inject_rank_fault(int rank, int64_t steps_done, FaultPoint point) {
  static const char* spec = std::getenv("NNR_TEST_RANK_FAULT");
  if (!spec || !*spec) return;
  char kind[16] = {0};
  int fault_rank = -1;
  long long after = -1;
  if (std::sscanf(spec, "%15[a-z]:%d:%lld", kind, &fault_rank, &after) != 3 || fault_rank != rank || after != steps_done)
    return;
  const std::string k = kind;
  const FaultPoint at = k == "devhang" || k == "sumhang" ? FaultPoint::LossSummed
                        : k == "buckethang" || k == "bucketexit" ? FaultPoint::Bucket
                                                        : FaultPoint::Step;
  if (at != point) return;
  if (k == "exit" || k == "bucketexit") {
    std::fprintf(stderr, "nnr: test fault: rank %d exits after %lld steps\n", rank, after);
    _exit(3);
  }
  if (k == "hang" || k == "devhang" || k == "sumhang" || k == "buckethang") {
    std::fprintf(stderr, "nnr: test fault: rank %d hangs after %lld steps%s\n", rank, after,
                 point == FaultPoint::LossSummed ? " and the loss's all-reduce"
                 : point == FaultPoint::Bucket   ? " and the start of its first gradient bucket"
                                                 : "");
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> open_gradient_ranges(const Parameter& p) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const int64_t numel = p.grad.numel();
  const UpdateMask& m = p.mask;
  if (m.kind == UpdateMask::Kind::All) {
    if (numel) ranges.emplace_back(0, numel);
  } else if (m.kind == UpdateMask::Kind::Rows) {
    const int64_t len = p.row_length();
    for (const int64_t r : m.rows) {
      if (!ranges.empty() && ranges.back().second == r * len) ranges.back().second += len;  // adjacent rows: one range
      else ranges.emplace_back(r * len, (r + 1) * len);
    }
  } else {
    const int64_t len = p.row_length();
    for (int64_t i = 0; i < numel; ++i)
      if (m.selects_element(i, len)) {
        if (!ranges.empty() && ranges.back().second == i) ++ranges.back().second;
        else ranges.emplace_back(i, i + 1);
      }
  }
  return ranges;
}

std::vector<GradientBucket> gradient_buckets(const std::vector<Parameter*>& params,
                                             const std::vector<std::vector<std::pair<int64_t, int64_t>>>& ranges,
                                             int64_t bucket_bytes) {
  std::vector<GradientBucket> buckets;
  size_t offset = 0;
  bool open_bucket = false;
  for (size_t k = params.size(); k-- > 0;) {  // backward finishes the last layer first
    int64_t count = 0;
    for (const auto& [b, e] : ranges[k]) count += e - b;
    if (count == 0) continue;  // nothing of it travels
    if (!open_bucket) {
      buckets.push_back(GradientBucket{{}, offset, 0});
      open_bucket = true;
    }
    GradientBucket& bucket = buckets.back();
    bucket.params.push_back(k);
    bucket.count += static_cast<size_t>(count);
    offset += static_cast<size_t>(count);
    // Closed once it holds bucket_bytes (0: never, one bucket of everything).
    if (bucket_bytes > 0 && static_cast<int64_t>(bucket.count * sizeof(float)) >= bucket_bytes) open_bucket = false;
  }
  return buckets;
}

double train_step_data_parallel(Sequential& model, Optimizer& optimizer, const Batch& global_batch,
                                Collective& collective, StepScratch& scratch, std::vector<float>& flat,
                                const LogitTerm& logit_term) {
  const int64_t n = global_batch.size();
  const RankShare share = rank_share(n, collective.rank(), collective.size());
  const std::vector<Parameter*> params = model.parameters();
  // A model on a CUDA device: its gradients are packed, summed by NCCL and unpacked on the device.
  Context* const device = !params.empty() && params.front()->value.device() == Device::CUDA
                              ? params.front()->value.context()
                              : nullptr;
  if (device && collective.cuda_device() < 0)
    throw InvalidArgument(std::string("[train] the model is on a CUDA device but the data-parallel collective is '") +
                          collective.name() + "', which sums host buffers only (a CUDA run needs cuda_collective())");
  if (device && device->device_index() != collective.cuda_device())
    throw Error("[train] the model is on CUDA device " + std::to_string(device->device_index()) +
                " but this rank's collective uses device " + std::to_string(collective.cuda_device()));
  static int64_t steps_summed = 0, buckets_started = 0;  // this process's (the test faults count them)

  // This rank's share: forward and loss. The loss is summed before backward, so that a non-finite
  // global loss (every rank sees it) skips backward and the gradients' all-reduce on every rank.
  double loss_sum = 0.0;
  model.zero_grad();
  Batch mine;
  Tensor device_x;  // lives until backward: the tape keeps a pointer to its input
  Tensor logit_grad;  // with a logit term: the share's loss gradient at the logits, the term's included
  if (share.size() > 0) {
    mine = rows_of(global_batch, share);
    if (device) device_x = mine.x.to(Device::CUDA, *device);
    model.forward(device ? device_x : mine.x, scratch.tape);
    loss_sum = scratch.tape.apply_loss(scratch.loss, mine.y) * static_cast<double>(share.size());
    if (logit_term && std::isfinite(loss_sum)) {
      // The share's logit gradient, with the extra term's added on the host (a batch of logits is small).
      const Tensor& logits = scratch.tape.output();
      logit_grad = Tensor::empty(logits.shape(), logits.placement());
      scratch.loss.backward(logit_grad);
      if (device) logit_grad = logit_grad.to_cpu();
      const Tensor host_logits = device ? logits.to_cpu() : Tensor();
      const double grad_scale = static_cast<double>(n) / static_cast<double>(share.size());
      loss_sum += static_cast<double>(n) *
                  logit_term(device ? host_logits : logits, share.begin, n, grad_scale, logit_grad);
      if (device) logit_grad = logit_grad.to(Device::CUDA, *device);
    }
  }
  collective.all_reduce_sum(&loss_sum, 1);
  const double value = n ? loss_sum / static_cast<double>(n) : 0.0;
  if (!std::isfinite(value)) return value;  // every rank sees it: none updates
  maybe_inject_rank_fault(collective.rank(), steps_summed++, FaultPoint::LossSummed);

  // Every rank holds the same masks, so every rank packs the same entries in the same order and
  // starts the same buckets in the same order (an empty share starts them all after its no-op
  // backward, with zeros).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> ranges(params.size());
  for (size_t k = 0; k < params.size(); ++k) ranges[k] = open_gradient_ranges(*params[k]);
  const int64_t bucket_bytes = all_reduce_bucket_bytes();
  const std::vector<GradientBucket> buckets = gradient_buckets(params, ranges, bucket_bytes);
  size_t total = 0;
  for (const GradientBucket& b : buckets) total += b.count;
  // The packed open entries: on the host (scaled while packing), or on the device (the caching
  // allocator makes a buffer per step cheap; NCCL scales while summing).
  Tensor packed;
  if (device) packed = Tensor::empty({static_cast<int64_t>(total)}, Placement{Device::CUDA, device});
  else flat.assign(total, 0.0f);  // an empty share adds zeros
  const bool has_gradients = share.size() > 0;
  // The gradient of this share's mean loss, times b_r / B: the ranks' sum is the gradient of the
  // global batch's mean loss.
  const float weight = static_cast<float>(static_cast<double>(share.size()) / static_cast<double>(n));
  if (device && !has_gradients && total) packed.zero();
  float* const pack_base = device ? packed.data() : flat.data();

  auto pack = [&](const GradientBucket& bucket) {
    if (!has_gradients) return;  // zeros already
    size_t at = bucket.offset;
    for (const size_t k : bucket.params) {
      const float* g = params[k]->grad.data();
      for (const auto& [b, e] : ranges[k]) {
        if (device) {
          device->copy_on_device(packed.data() + at, g + b, static_cast<size_t>(e - b) * sizeof(float));
          at += static_cast<size_t>(e - b);
        } else {
          for (int64_t i = b; i < e; ++i) flat[at++] = g[i] * weight;
        }
      }
    }
  };
  // Buckets start strictly in order (the ranks' nonblocking calls must match), each once every
  // parameter in it is final.
  const bool overlapped = bucket_bytes > 0;
  std::vector<size_t> unfinished(buckets.size()), bucket_of(params.size(), buckets.size());
  for (size_t b = 0; b < buckets.size(); ++b) {
    unfinished[b] = buckets[b].params.size();
    for (const size_t k : buckets[b].params) bucket_of[k] = b;
  }
  size_t next = 0;
  auto start_ready = [&] {
    for (; next < buckets.size() && unfinished[next] == 0; ++next) {
      const GradientBucket& bucket = buckets[next];
      pack(bucket);
      float* x = pack_base + bucket.offset;
      if (device) collective.start_all_reduce_sum_device(x, static_cast<int64_t>(bucket.count), weight, device->stream());
      else collective.start_all_reduce_sum(x, static_cast<int64_t>(bucket.count));
      if (next == 0) maybe_inject_rank_fault(collective.rank(), buckets_started++, FaultPoint::Bucket);
    }
  };

  std::unordered_map<const Parameter*, size_t> index_of;  // the hook's: a layer's parameters in params
  if (has_gradients) {
    if (overlapped) {
      for (size_t k = 0; k < params.size(); ++k) index_of.emplace(params[k], k);
      scratch.tape.set_gradients_final([&](size_t, Layer& layer) {
        for (Parameter* p : layer.parameters()) {
          const auto found = index_of.find(p);
          if (found != index_of.end() && bucket_of[found->second] < buckets.size()) --unfinished[bucket_of[found->second]];
        }
        start_ready();
        collective.progress_all_reduce_sums();
      });
    }
    try {
      if (logit_term) scratch.tape.backward_from(std::move(logit_grad));
      else scratch.tape.backward();
    } catch (...) {
      scratch.tape.set_gradients_final(nullptr);
      throw;
    }
    scratch.tape.set_gradients_final(nullptr);  // the hook refers to this step's locals
  }
  if (overlapped) {
    // Buckets backward did not finish (an empty share: all of them) start now, in order.
    std::fill(unfinished.begin(), unfinished.end(), 0);
    start_ready();
    collective.wait_all_reduce_sums();
  } else {
    // One all-reduce of every open entry after backward.
    for (const GradientBucket& bucket : buckets) pack(bucket);
    if (device)
      collective.all_reduce_sum_device(packed.data(), static_cast<int64_t>(total), weight, device->stream());
    else
      collective.all_reduce_sum(flat.data(), static_cast<int64_t>(total));
  }
  for (size_t k = 0; k < params.size(); ++k) {
    Tensor& grad = params[k]->grad;
    float* g = grad.data();
    // Closed entries: zero on every rank (their own shares' values would differ between ranks).
    if (params[k]->mask.kind != UpdateMask::Kind::All) grad.zero();
    if (bucket_of[k] == buckets.size()) continue;  // nothing open
    // Where its entries are in the packed buffer: after the parameters before it in its bucket.
    const GradientBucket& bucket = buckets[bucket_of[k]];
    size_t at = bucket.offset;
    for (const size_t j : bucket.params) {
      if (j == k) break;
      for (const auto& [b, e] : ranges[j]) at += static_cast<size_t>(e - b);
    }
    for (const auto& [b, e] : ranges[k]) {
      if (device) {
        device->copy_on_device(g + b, packed.data() + at, static_cast<size_t>(e - b) * sizeof(float));
        at += static_cast<size_t>(e - b);
      } else {
        for (int64_t i = b; i < e; ++i) g[i] = flat[at++];
      }
    }
  }
  optimizer.step(params);
  return value;
}

void broadcast_parameters(Sequential& model, Collective& collective, int root) {
  for (Parameter* p : model.parameters()) {
    if (p->value.device() == Device::CUDA)
      collective.broadcast_device(p->value.data(), p->value.bytes(), root, p->value.context()->stream());
    else
      collective.broadcast(p->value.data(), p->value.bytes(), root);
  }
}

bool parameters_identical(Sequential& model, Collective& collective) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (Parameter* p : model.parameters()) {
    if (p->value.device() == Device::CUDA) {
      const Tensor host = p->value.to_cpu();
      h = fnv1a(host.data(), host.bytes(), h);
    } else {
      h = fnv1a(p->value.data(), p->value.bytes(), h);
    }
  }
  uint64_t root = h;
  collective.broadcast(&root, sizeof root, 0);
  double differing = root == h ? 0.0 : 1.0;
  collective.all_reduce_sum(&differing, 1);
  return differing == 0.0;
}

EpochResult train_epoch(Sequential& model, Optimizer& optimizer, Batcher& batches, int epoch, int epochs,
                        const ProgressCallback& progress, const LearningRateSchedule* schedule, int64_t* step,
                        Context* cuda_context, GraphedTrainStep* graph, Collective* collective) {
  const bool parallel = runs_data_parallel(collective);
  if (parallel && graph)
    throw InvalidArgument("[train] data-parallel training does not replay a CUDA graph (its step all-reduces between "
                          "backward and update): run without --cuda-graph under mpirun");
  if (parallel && cuda_context && !model.parameters().empty() && model.parameters().front()->value.context() != cuda_context)
    throw InvalidArgument("[train] data-parallel training on a CUDA context needs the model on it (Sequential::to)");
  std::vector<float> flat;  // the data-parallel all-reduce buffer
  static int64_t parallel_steps = 0;  // this process's data-parallel steps (the test fault counts them)
  const auto start = Clock::now();
  Batch batch;
  StepScratch scratch;
  EpochResult result;
  double loss_sum = 0.0;
  TrainProgress p;
  p.epoch = epoch;
  p.epochs = epochs;
  p.batches = batches.batches_per_epoch();
  while (batches.next(batch)) {
    if (schedule && step) optimizer.set_learning_rate(schedule->at((*step)++));
    double value = 0.0;
    if (parallel) {
      maybe_inject_rank_fault(collective->rank(), parallel_steps++, FaultPoint::Step);
      value = train_step_data_parallel(model, optimizer, batch, *collective, scratch, flat);
    } else if (!graph || !graph->step(batch, value)) {
      value = train_step(model, optimizer, batch, cuda_context, &scratch);
    }
    if (!std::isfinite(value)) {
      std::ostringstream msg;
      msg << "[train] loss is " << value << " at epoch " << epoch << ", batch " << p.batch + 1
          << ": training diverged (try a smaller --lr)";
      throw Error(msg.str());
    }
    loss_sum += value * static_cast<double>(batch.size());
    result.samples += batch.size();
    ++p.batch;
    if (progress) {
      p.loss = loss_sum / static_cast<double>(result.samples);
      p.samples_per_second = static_cast<double>(result.samples) / std::max(1e-9, seconds_since(start));
      progress(p);
    }
  }
  result.seconds = seconds_since(start);
  result.loss = result.samples ? loss_sum / static_cast<double>(result.samples) : 0.0;
  if (progress) {
    p.loss = result.loss;
    p.samples_per_second = static_cast<double>(result.samples) / std::max(1e-9, result.seconds);
    p.epoch_done = true;
    progress(p);
  }
  return result;
}

namespace {

// The model's logits for a host batch, on the host: forward on the CPU, or upload, forward on the
// device and download.
Tensor host_logits(Sequential& model, const Tensor& x, Context* cuda_context) {
  if (!cuda_context) return model.forward(x);
  return model.forward(x.to(Device::CUDA, *cuda_context)).to_cpu();
}

}  // namespace

Evaluation evaluate(Sequential& model, const Dataset& data, int64_t batch_size, Context* cuda_context,
                    Collective* collective) {
  Evaluation e;
  e.samples = data.size();
  const int32_t classes = data.num_classes;
  e.class_count.assign(static_cast<size_t>(classes), 0);
  std::vector<int64_t> correct_per_class(static_cast<size_t>(classes), 0);
  // With a CUDA context the logits come back to the host, so the sums below are host buffers.
  const bool parallel = collective && collective->size() > 1;
  // Data parallel: this rank's contiguous share of the samples; the sums are reduced below.
  const RankShare share = parallel ? rank_share(e.samples, collective->rank(), collective->size()) : RankShare{0, e.samples};
  std::vector<int64_t> rows(static_cast<size_t>(share.size()));
  std::iota(rows.begin(), rows.end(), share.begin);
  Batcher batcher(data, std::move(rows), BatcherOptions{batch_size, false, false}, Rng(0));
  Batch batch;
  double loss_sum = 0.0;
  int64_t correct = 0;
  while (batcher.next(batch)) {
    const Tensor logits = host_logits(model, batch.x, cuda_context);
    Tensor probs = Tensor::empty(logits.shape());
    loss_sum += softmax_cross_entropy_forward(logits, batch.y, probs) * static_cast<double>(batch.size());
    const int64_t k = logits.dim(1);
    for (int64_t i = 0; i < batch.size(); ++i) {
      const float* row = logits.data() + i * k;
      int64_t best = 0;
      for (int64_t j = 1; j < k; ++j)
        if (row[j] > row[best]) best = j;
      const int32_t label = batch.y[static_cast<size_t>(i)];
      e.class_count[static_cast<size_t>(label)]++;
      if (best == label) {
        ++correct;
        correct_per_class[static_cast<size_t>(label)]++;
      }
    }
  }
  if (parallel) {
    // Counts below 2^53 are exact in doubles: one all-reduce of the loss, the hits and the classes.
    std::vector<double> sums{loss_sum, static_cast<double>(correct)};
    for (size_t c = 0; c < e.class_count.size(); ++c) {
      sums.push_back(static_cast<double>(e.class_count[c]));
      sums.push_back(static_cast<double>(correct_per_class[c]));
    }
    collective->all_reduce_sum(sums.data(), static_cast<int64_t>(sums.size()));
    loss_sum = sums[0];
    correct = static_cast<int64_t>(sums[1]);
    for (size_t c = 0; c < e.class_count.size(); ++c) {
      e.class_count[c] = static_cast<int64_t>(sums[2 + 2 * c]);
      correct_per_class[c] = static_cast<int64_t>(sums[3 + 2 * c]);
    }
  }
  if (e.samples) {
    e.loss = loss_sum / static_cast<double>(e.samples);
    e.accuracy = static_cast<double>(correct) / static_cast<double>(e.samples);
  }
  e.class_accuracy.resize(static_cast<size_t>(classes));
  for (size_t c = 0; c < e.class_accuracy.size(); ++c)
    e.class_accuracy[c] = e.class_count[c] ? static_cast<double>(correct_per_class[c]) / e.class_count[c] : 0.0;
  return e;
}

std::vector<double> accuracy_with_logit_offsets(Sequential& model, const Dataset& data,
                                                const std::vector<std::vector<float>>& offsets, int64_t batch_size,
                                                Collective* collective) {
  const bool parallel = collective && collective->size() > 1;
  const RankShare share = parallel ? rank_share(data.size(), collective->rank(), collective->size()) : RankShare{0, data.size()};
  std::vector<int64_t> rows(static_cast<size_t>(share.size()));
  std::iota(rows.begin(), rows.end(), share.begin);
  Batcher batcher(data, std::move(rows), BatcherOptions{batch_size, false, false}, Rng(0));
  std::vector<double> correct(offsets.size(), 0.0);
  Batch batch;
  while (batcher.next(batch)) {
    const Tensor logits = host_logits(model, batch.x, nullptr);
    const int64_t k = logits.dim(1);
    for (const std::vector<float>& o : offsets)
      if (static_cast<int64_t>(o.size()) != k)
        throw InvalidArgument("[evaluate] a logit offset of " + std::to_string(o.size()) + " values for a model with " +
                              std::to_string(k) + " outputs");
    for (int64_t i = 0; i < batch.size(); ++i) {
      const float* row = logits.data() + i * k;
      for (size_t c = 0; c < offsets.size(); ++c) {
        const float* o = offsets[c].data();
        int64_t best = 0;
        for (int64_t j = 1; j < k; ++j)
          if (row[j] + o[j] > row[best] + o[best]) best = j;
        if (best == batch.y[static_cast<size_t>(i)]) correct[c] += 1.0;
      }
    }
  }
  if (parallel) collective->all_reduce_sum(correct.data(), static_cast<int64_t>(correct.size()));
  for (double& c : correct) c = data.size() ? c / static_cast<double>(data.size()) : 0.0;
  return correct;
}

Tensor predict_probabilities(Sequential& model, const Tensor& features, int64_t batch_size, Context* cuda_context) {
  const int64_t n = features.rank() ? features.dim(0) : 0;
  Shape sample(features.shape().begin() + 1, features.shape().end());
  const int64_t k = model.output_shape(with_batch(1, sample))[1];
  Tensor probs = Tensor::empty({n, k});
  const int64_t per_sample = n ? features.numel() / n : 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t b = std::min(batch_size, n - start);
    Tensor x = Tensor::empty(with_batch(b, sample));
    std::copy(features.data() + start * per_sample, features.data() + (start + b) * per_sample, x.data());
    const Tensor logits = host_logits(model, x, cuda_context);
    Tensor p = Tensor::empty(logits.shape());
    softmax(logits, p);
    std::copy(p.data(), p.data() + p.numel(), probs.data() + start * k);
  }
  return probs;
}

void check_model_accepts(const Sequential& model, const Shape& sample_shape, int32_t num_classes,
                         const std::string& data_name) {
  Shape out;
  try {
    out = model.output_shape(with_batch(1, sample_shape));
  } catch (const InvalidArgument& e) {
    throw InvalidArgument("[model] " + data_name + " has samples of shape " + shape_to_string(sample_shape) +
                          " that model '" + model.spec() + "' cannot take: " + e.what());
  }
  if (out.size() != 2)
    throw InvalidArgument("[model] model '" + model.spec() + "' does not end in a [N, classes] output");
  if (num_classes > out[1])
    throw InvalidArgument("[model] " + data_name + " has " + std::to_string(num_classes) + " classes but model '" +
                          model.spec() + "' outputs " + std::to_string(out[1]));
}

}  // namespace nnr
