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
  // CUDA, for a step recorded into a CUDA graph: the labels are already on the device (one per
  // row, validated by the caller, alive until backward) and the mean loss goes to the device
  // double `device_loss`; nothing is copied to or from the host.
  void forward_queued(const Tensor& logits, const int32_t* device_labels, double* device_loss);
  // dL/dlogits of the last forward (overwrites dlogits, shape of the logits).
  void backward(Tensor& dlogits) const;
  const Tensor& probabilities() const { return probs_; }

 private:
  Tensor probs_;
  std::vector<int32_t> labels_;
  const int32_t* queued_labels_ = nullptr;  // set by forward_queued, which leaves labels_ empty
  // The labels on the logits' device: uploaded once by forward, read again by backward.
  mutable DeviceCopy<int32_t> device_labels_;
};

}  // namespace nnr
