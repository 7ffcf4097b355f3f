#include "apps/trainer/graphed_step.h"

#include <array>
#include <cstring>
#include <string>

#include "engine/core/error.h"
#include "engine/nn/shape_layers.h"

namespace nnr {

namespace {

// Every parameter tensor a step reads or writes, in a fixed order.
std::array<const Tensor*, 5> tensors_of(const Parameter& p) {
  return {&p.value, &p.grad, &p.anchor, &p.omega, &p.path_integral};
}

const float* storage_of(const Tensor* t) { return t->defined() ? t->data() : nullptr; }

bool same_mask(const UpdateMask& a, const UpdateMask& b) {
  return a.kind == b.kind && a.rows == b.rows && a.bits == b.bits;
}

}  // namespace

// What a recording depends on, taken at a warm-up.
struct GraphedTrainStep::Frozen {
  std::vector<UpdateMask> masks;
  std::vector<const float*> storage;
  float penalty_strength = 0.0f;
  int64_t workspace_generation = 0;

  Frozen(const std::vector<Parameter*>& params, const Optimizer& optimizer, const Context& ctx)
      : penalty_strength(optimizer.penalty_strength()), workspace_generation(ctx.workspace_generation()) {
    for (const Parameter* p : params) {
      masks.push_back(p->mask);
      for (const Tensor* t : tensors_of(*p)) storage.push_back(storage_of(t));
    }
  }

  // Compared in place, without copying the live state: this runs before every step.
  bool matches(const std::vector<Parameter*>& params, const Optimizer& optimizer, const Context& ctx) const {
    if (optimizer.penalty_strength() != penalty_strength || ctx.workspace_generation() != workspace_generation ||
        params.size() != masks.size())
      return false;
    size_t k = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (!same_mask(params[i]->mask, masks[i])) return false;
      for (const Tensor* t : tensors_of(*params[i]))
        if (storage_of(t) != storage[k++]) return false;
    }
    return true;
  }
};

GraphedTrainStep::GraphedTrainStep(Sequential& model, Optimizer& optimizer, Context& ctx)
    : model_(model), optimizer_(optimizer), ctx_(ctx), params_(model.parameters()), graph_(ctx) {
  for (size_t i = 0; i < model.size(); ++i) {
    const auto* dropout = dynamic_cast<const Dropout*>(&model.layer(i));
    if (dropout && dropout->rate() > 0.0f)
      throw InvalidArgument("[cuda-graph] model '" + model.spec() + "' has dropout (layer " + std::to_string(i) +
                            "): a replayed step would reuse one dropout mask at every step; train it without "
                            "--cuda-graph");
  }
  for (const Parameter* p : params_)
    if (p->value.device() != Device::CUDA || p->value.context() != &ctx)
      throw InvalidArgument("[cuda-graph] parameter " + p->name + " is not on this step's CUDA context");
  const auto scalar_count = static_cast<int64_t>(params_.size()) * Optimizer::kStepScalars;
  scalars_device_ = Tensor::empty({scalar_count}, Placement::cuda(ctx));
  scalars_host_ = PinnedHostBuffer(static_cast<size_t>(scalar_count) * sizeof(float));
  loss_device_ = Tensor::empty({2}, Placement::cuda(ctx));  // one double
  loss_host_ = PinnedHostBuffer(sizeof(double));
}

GraphedTrainStep::~GraphedTrainStep() { graph_.clear(); }

// The batch into the page-locked buffers (allocated for the first batch's shape). The previous
// step has finished: step() waited for its loss.
void GraphedTrainStep::prepare(const Batch& batch) {
  if (!x_device_.defined()) {
    x_device_ = Tensor::empty(batch.x.shape(), Placement::cuda(ctx_));
    labels_device_ = Tensor::empty({batch.size()}, Placement::cuda(ctx_));  // int32 labels in float slots
    x_host_ = PinnedHostBuffer(batch.x.bytes());
    labels_host_ = PinnedHostBuffer(static_cast<size_t>(batch.size()) * sizeof(int32_t));
    classes_ = model_.output_shape(batch.x.shape())[1];
  }
  // The kernels trust the labels: check them here, as softmax_cross_entropy_forward does.
  if (static_cast<int64_t>(batch.y.size()) != batch.size())
    throw InvalidArgument("[cuda-graph] " + std::to_string(batch.y.size()) + " labels for a batch of " +
                          std::to_string(batch.size()));
  for (size_t i = 0; i < batch.y.size(); ++i)
    if (batch.y[i] < 0 || batch.y[i] >= classes_)
      throw InvalidArgument("[cuda-graph] label " + std::to_string(batch.y[i]) + " at row " + std::to_string(i) +
                            " outside [0, " + std::to_string(classes_) + ")");
  std::memcpy(x_host_.data(), batch.x.data(), batch.x.bytes());
  std::memcpy(labels_host_.data(), batch.y.data(), batch.y.size() * sizeof(int32_t));
  optimizer_.write_step_scalars(params_, scalars_host_.as<float>());
}

// The step as device work only: what a warm-up runs and a recording records.
void GraphedTrainStep::queue_step() {
  ctx_.queue_upload(x_device_.data(), x_host_.data(), x_host_.bytes());
  ctx_.queue_upload(labels_device_.data(), labels_host_.data(), labels_host_.bytes());
  ctx_.queue_upload(scalars_device_.data(), scalars_host_.data(), scalars_host_.bytes());
  auto* device_loss = reinterpret_cast<double*>(loss_device_.data());
  model_.zero_grad();
  model_.forward(x_device_, tape_);
  tape_.apply_loss_queued(loss_fn_, reinterpret_cast<const int32_t*>(labels_device_.data()), device_loss);
  tape_.backward();
  optimizer_.read_step_scalars_from(scalars_device_.data());
  try {
    optimizer_.step(params_);
  } catch (...) {
    optimizer_.read_step_scalars_from(nullptr);
    throw;
  }
  optimizer_.read_step_scalars_from(nullptr);
  ctx_.queue_download(loss_host_.data(), device_loss, sizeof(double));
}

void GraphedTrainStep::invalidate() noexcept {
  graph_.clear();
  frozen_.reset();
}

bool GraphedTrainStep::step(const Batch& batch, double& loss) {
  if (x_device_.defined() && batch.x.shape() != x_device_.shape()) {
    invalidate();  // the caller runs this batch eagerly, which may replace buffers the graph uses
    return false;
  }
  prepare(batch);
  const bool unchanged = frozen_ && frozen_->matches(params_, optimizer_, ctx_);

  if (unchanged && graph_.recorded()) {
    graph_.replay();
    optimizer_.count_replayed_step(params_);
    ++counts_.replays;
  } else if (unchanged) {
    // Warm since the last change: record, then run what was recorded.
    graph_.record([this] { queue_step(); });
    graph_.replay();
    ++counts_.recordings;
  } else {
    graph_.clear();
    queue_step();
    frozen_ = std::make_unique<Frozen>(params_, optimizer_, ctx_);  // after the warm-up's uploads and workspace growth
    ++counts_.warmups;
  }
  ctx_.synchronize();
  loss = *loss_host_.as<double>();
  return true;
}

}  // namespace nnr
