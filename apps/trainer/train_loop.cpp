#include "apps/trainer/train_loop.h"

#include <chrono>
#include <cmath>
#include <sstream>

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

EpochResult train_epoch(Sequential& model, Optimizer& optimizer, Batcher& batches, int epoch, int epochs,
                        const ProgressCallback& progress, const LearningRateSchedule* schedule, int64_t* step,
                        Context* cuda_context, GraphedTrainStep* graph) {
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
    if (!graph || !graph->step(batch, value)) value = train_step(model, optimizer, batch, cuda_context, &scratch);
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

Evaluation evaluate(Sequential& model, const Dataset& data, int64_t batch_size, Context* cuda_context) {
  Evaluation e;
  e.samples = data.size();
  const int32_t classes = data.num_classes;
  e.class_count.assign(static_cast<size_t>(classes), 0);
  std::vector<int64_t> correct_per_class(static_cast<size_t>(classes), 0);
  Batcher batcher(data, BatcherOptions{batch_size, false, false}, Rng(0));
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
  if (e.samples) {
    e.loss = loss_sum / static_cast<double>(e.samples);
    e.accuracy = static_cast<double>(correct) / static_cast<double>(e.samples);
  }
  e.class_accuracy.resize(static_cast<size_t>(classes));
  for (size_t c = 0; c < e.class_accuracy.size(); ++c)
    e.class_accuracy[c] = e.class_count[c] ? static_cast<double>(correct_per_class[c]) / e.class_count[c] : 0.0;
  return e;
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
