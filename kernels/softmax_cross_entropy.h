#pragma once
// Softmax cross-entropy over the last axis of [n, k] row-major logits (k >= 1), averaged over the
// rows. Stable: log-sum-exp with the row maximum subtracted, so large logits never overflow.
//   *_cpu  the CPU reference (kernels/softmax_cross_entropy.cpp), host pointers.
//   others the CUDA launchers (kernels/softmax_cross_entropy.cu): device pointers, asynchronous on
//          `stream`; labels are int32 in [0, k) (the engine validates them on the host; a label
//          outside that range makes its row's loss NaN instead of reading out of bounds).
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace nnr::kernels {

// ---- CPU reference.
// probs = softmax(logits) row-wise; returns the mean over rows of logsumexp(row) − row[label]
// (0 for n == 0).
double softmax_cross_entropy_forward_cpu(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                         float* probs);
// dlogits = (probs − onehot(labels)) · scale; overwrites.
void softmax_cross_entropy_backward_cpu(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                                        float* dlogits);
// probs = softmax(logits) row-wise.
void softmax_cpu(const float* logits, int64_t n, int64_t k, float* probs);

// ---- CUDA launchers.

// probs = softmax(logits) row-wise; *loss (one device double, overwritten) = mean over rows of
// logsumexp(row) − row[label]. Stable: the row maximum is subtracted before exp.
void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k, float* probs, double* loss,
                          cudaStream_t stream);
// dlogits = (probs − onehot(labels)) · scale; overwrites (scale = 1 / n for the batch mean).
void softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                           float* dlogits, cudaStream_t stream);
// probs = softmax(logits) row-wise, no loss (prediction).
void softmax_forward(const float* logits, int64_t n, int64_t k, float* probs, cudaStream_t stream);

}  // namespace nnr::kernels
