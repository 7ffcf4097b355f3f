#include "apps/trainer/distillation.h"

#include <cmath>

#include "engine/core/error.h"

namespace nnr {

double add_logit_matching(const Tensor& logits, int64_t first_row, const Tensor& stored, float weight, Tensor& grad) {
  if (logits.rank() != 2 || stored.rank() != 2 || grad.shape() != logits.shape() || stored.dim(1) != logits.dim(1) ||
      first_row < 0 || first_row + stored.dim(0) > logits.dim(0))
    throw InvalidArgument("[distill] stored logits " + shape_to_string(stored.shape()) + " from row " +
                          std::to_string(first_row) + " do not fit logits " + shape_to_string(logits.shape()) +
                          " (gradient " + shape_to_string(grad.shape()) + ")");
  const int64_t rows = stored.dim(0), classes = stored.dim(1);
  if (rows == 0 || classes == 0) return 0.0;
  const float* z = logits.data() + first_row * classes;
  const float* s = stored.data();
  float* g = grad.data() + first_row * classes;
  int64_t matched = 0;
  for (int64_t i = 0; i < rows * classes; ++i) matched += std::isnan(s[i]) ? 0 : 1;
  if (matched == 0) return 0.0;
  const double scale = 1.0 / static_cast<double>(matched);
  double sum = 0.0;
  for (int64_t i = 0; i < rows * classes; ++i) {
    if (std::isnan(s[i])) continue;
    const double d = static_cast<double>(z[i]) - static_cast<double>(s[i]);
    sum += d * d;
    g[i] += static_cast<float>(2.0 * weight * d * scale);
  }
  return weight * sum * scale;
}

double distilled_train_step(Sequential& model, Optimizer& optimizer, const Batch& batch, const Tensor& stored,
                            float weight, Context* cuda, StepScratch& scratch) {
  // Lives until the end of the step: the tape keeps a pointer to its input until backward.
  const Tensor device_x = cuda ? batch.x.to(Device::CUDA, *cuda) : Tensor();
  model.zero_grad();
  model.forward(cuda ? device_x : batch.x, scratch.tape);
  double value = scratch.tape.apply_loss(scratch.loss, batch.y);
  if (!std::isfinite(value)) return value;
  const Tensor& logits = scratch.tape.output();
  Tensor grad = Tensor::empty(logits.shape(), logits.placement());
  scratch.loss.backward(grad);
  if (cuda) grad = grad.to_cpu();
  const Tensor host_logits = cuda ? logits.to_cpu() : Tensor();
  value += add_logit_matching(cuda ? host_logits : logits, batch.size() - stored.dim(0), stored, weight, grad);
  if (!std::isfinite(value)) return value;
  scratch.tape.backward_from(cuda ? grad.to(Device::CUDA, *cuda) : std::move(grad));
  optimizer.step(model.parameters());
  return value;
}

}  // namespace nnr
