#include "apps/trainer/distillation.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace nnr {

namespace {

int64_t matched_entries(const Tensor& stored) {
  int64_t matched = 0;
  const float* s = stored.data();
  for (int64_t i = 0; i < stored.numel(); ++i) matched += std::isnan(s[i]) ? 0 : 1;
  return matched;
}

// weight · Σ (z − s)² / matched over the entries of s that are not NaN, its gradient times grad_scale
// added into g.
double match_entries(const float* z, const float* s, float* g, int64_t entries, float weight, int64_t matched,
                     double grad_scale) {
  const double scale = 1.0 / static_cast<double>(matched);
  double sum = 0.0;
  for (int64_t i = 0; i < entries; ++i) {
    if (std::isnan(s[i])) continue;
    const double d = static_cast<double>(z[i]) - static_cast<double>(s[i]);
    sum += d * d;
    g[i] += static_cast<float>(2.0 * weight * d * scale * grad_scale);
  }
  return weight * sum * scale;
}

void require_fit(const Tensor& logits, const Tensor& stored, const Tensor& grad, int64_t first_row, int64_t rows) {
  if (logits.rank() != 2 || stored.rank() != 2 || grad.shape() != logits.shape() || stored.dim(1) != logits.dim(1) ||
      first_row < 0 || first_row + stored.dim(0) > rows)
    throw InvalidArgument("[distill] stored logits " + shape_to_string(stored.shape()) + " from row " +
                          std::to_string(first_row) + " do not fit logits " + shape_to_string(logits.shape()) +
                          " (gradient " + shape_to_string(grad.shape()) + ")");
}

}  // namespace

double add_logit_matching(const Tensor& logits, int64_t first_row, const Tensor& stored, float weight, Tensor& grad) {
  require_fit(logits, stored, grad, first_row, logits.rank() == 2 ? logits.dim(0) : 0);
  const int64_t rows = stored.dim(0), classes = stored.dim(1);
  if (rows == 0 || classes == 0) return 0.0;
  const int64_t matched = matched_entries(stored);
  if (matched == 0) return 0.0;
  return match_entries(logits.data() + first_row * classes, stored.data(), grad.data() + first_row * classes,
                       rows * classes, weight, matched, 1.0);
}

double add_logit_matching_share(const Tensor& logits, int64_t share_begin, int64_t global_rows, const Tensor& stored,
                                float weight, double grad_scale, Tensor& grad) {
  require_fit(logits, stored, grad, global_rows - (stored.rank() == 2 ? stored.dim(0) : 0), global_rows);
  const int64_t classes = stored.dim(1), replay_begin = global_rows - stored.dim(0);
  if (share_begin < 0 || share_begin + logits.dim(0) > global_rows)
    throw InvalidArgument("[distill] a share of rows [" + std::to_string(share_begin) + ", " +
                          std::to_string(share_begin + logits.dim(0)) + ") outside a batch of " +
                          std::to_string(global_rows));
  const int64_t lo = std::max(share_begin, replay_begin), hi = share_begin + logits.dim(0);
  const int64_t matched = matched_entries(stored);  // over the whole batch's replayed rows: every rank's
  if (hi <= lo || classes == 0 || matched == 0) return 0.0;
  return match_entries(logits.data() + (lo - share_begin) * classes, stored.data() + (lo - replay_begin) * classes,
                       grad.data() + (lo - share_begin) * classes, (hi - lo) * classes, weight, matched, grad_scale);
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
