#pragma once
// SoftmaxCrossEntropy: mean over the batch of −log softmax(logits)[label]. Keeps the
// probabilities of its last forward for the backward.
#include <cstdint>
#include <vector>

#include "engine/core/device_copy.h"
#include "engine/core/tensor.h"

namespace nnr {

class SoftmaxCrossEntropy {
 public:
  double forward(const Tensor& logits, const std::vector<int32_t>& labels);
  // dL/dlogits of the last forward (overwrites dlogits, shape of the logits).
  void backward(Tensor& dlogits) const;
  const Tensor& probabilities() const { return probs_; }

 private:
  Tensor probs_;
  std::vector<int32_t> labels_;
  // The labels on the logits' device: uploaded once by forward, read again by backward.
  mutable DeviceCopy<int32_t> device_labels_;
};

}  // namespace nnr
