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
  const int32_t* staged = logits.device() == Device::CUDA ? device_labels_.on(logits.placement(), labels_) : nullptr;
  return softmax_cross_entropy_forward(logits, labels_, probs_, staged);
}

void SoftmaxCrossEntropy::backward(Tensor& dlogits) const {
  if (!probs_.defined()) throw Error("[softmax_cross_entropy] backward before forward");
  const float scale = probs_.dim(0) ? 1.0f / static_cast<float>(probs_.dim(0)) : 0.0f;
  const int32_t* staged = probs_.device() == Device::CUDA ? device_labels_.on(probs_.placement(), labels_) : nullptr;
  softmax_cross_entropy_backward(probs_, labels_, scale, dlogits, staged);
}

}  // namespace nnr
