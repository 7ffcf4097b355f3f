#include "engine/nn/loss.h"

#include "engine/core/error.h"
#include "engine/ops/softmax_cross_entropy.h"

namespace nnr {

double SoftmaxCrossEntropy::forward(const Tensor& logits, const std::vector<int32_t>& labels) {
  // Release the last batch's probabilities before allocating: on CUDA the block goes back to the
  // cache and is reused here, so a training loop reaches a steady state with no cudaMalloc.
  probs_ = Tensor();
  probs_ = Tensor::empty(logits.shape(), logits.placement());
  labels_ = labels;
  queued_labels_ = nullptr;
  const int32_t* staged = logits.device() == Device::CUDA ? device_labels_.on(logits.placement(), labels_) : nullptr;
  return softmax_cross_entropy_forward(logits, labels_, probs_, staged);
}

void SoftmaxCrossEntropy::forward_queued(const Tensor& logits, const int32_t* device_labels, double* device_loss) {
  probs_ = Tensor();  // as in forward: the block returns to the cache before the next is taken
  probs_ = Tensor::empty(logits.shape(), logits.placement());
  labels_.clear();
  queued_labels_ = device_labels;
  softmax_cross_entropy_forward_queued(logits, device_labels, probs_, device_loss);
}

void SoftmaxCrossEntropy::backward(Tensor& dlogits) const {
  if (!probs_.defined()) throw Error("[softmax_cross_entropy] backward before forward");
  const float scale = probs_.dim(0) ? 1.0f / static_cast<float>(probs_.dim(0)) : 0.0f;
  if (queued_labels_) {
    softmax_cross_entropy_backward_queued(probs_, queued_labels_, scale, dlogits);
    return;
  }
  const int32_t* staged = probs_.device() == Device::CUDA ? device_labels_.on(probs_.placement(), labels_) : nullptr;
  softmax_cross_entropy_backward(probs_, labels_, scale, dlogits, staged);
}

}  // namespace nnr
