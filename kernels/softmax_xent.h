#pragma once
// Softmax cross-entropy over the last axis of [n, k] row-major logits, on the device.
// CPU reference: engine/ops/softmax_cross_entropy.h. All pointers are device pointers; labels
// are int32 in [0, k) (the engine validates them on the host; a label outside that range makes
// its row's loss NaN instead of reading out of bounds). Asynchronous on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace nnr::kernels {

// probs = softmax(logits) row-wise; *loss (one device double, overwritten) = mean over rows of
// logsumexp(row) − row[label]. Stable: the row maximum is subtracted before exp.
void softmax_xent_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k, float* probs, double* loss,
                          cudaStream_t stream);
// dlogits = (probs − onehot(labels)) · scale; overwrites (scale = 1 / n for the batch mean).
void softmax_xent_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                           float* dlogits, cudaStream_t stream);
// probs = softmax(logits) row-wise, no loss (prediction).
void softmax_forward(const float* logits, int64_t n, int64_t k, float* probs, cudaStream_t stream);

}  // namespace nnr::kernels
