#pragma once
// Softmax cross-entropy over the last axis of [N, K] logits, averaged over the batch.
// Stable: log-sum-exp with the row maximum subtracted, so large logits never overflow.
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

// Writes the softmax probabilities into `probs` ([N, K]) and returns the mean loss.
// Labels must lie in [0, K); an out-of-range label is an nnr::InvalidArgument.
// On CUDA, `device_labels` may hold the same labels already on the device (a DeviceCopy the
// caller keeps for the backward too); null: they are uploaded for this call.
double softmax_cross_entropy_forward(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                                     const int32_t* device_labels = nullptr);
// dlogits = (probs - onehot(labels)) * scale (scale = 1 / N for the batch mean); overwrites.
void softmax_cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, float scale,
                                    Tensor& dlogits, const int32_t* device_labels = nullptr);
// The same two on CUDA tensors without a host round trip, for work recorded into a CUDA graph:
// the labels (one per row, each in [0, K): the caller validated them) are already on the device,
// and the mean loss goes to the device double `device_loss`. Nothing waits for the stream.
void softmax_cross_entropy_forward_queued(const Tensor& logits, const int32_t* device_labels, Tensor& probs,
                                          double* device_loss);
void softmax_cross_entropy_backward_queued(const Tensor& probs, const int32_t* device_labels, float scale,
                                           Tensor& dlogits);
// Row-wise softmax only (for prediction).
void softmax(const Tensor& logits, Tensor& probs);

}  // namespace nnr
