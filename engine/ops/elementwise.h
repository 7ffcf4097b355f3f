#pragma once
// Elementwise and row/channel-broadcast ops of the layers. Gradient convention: functions
// named *_backward overwrite their output (dx); functions that take `accumulate` add to it
// when it is true (parameter gradients accumulate, activation gradients overwrite).
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr {

class Rng;

// y[n, c, ...] += bias[c]: rows of a [N, C] matrix, or channels of an [N, C, H, W] tensor.
void add_bias(Tensor& y, const Tensor& bias);
// db[c] (+)= sum of dy over every axis but the channel axis 1.
void bias_backward(const Tensor& dy, Tensor& db, bool accumulate);

void relu_forward(const Tensor& x, Tensor& y);
// dx = dy where y > 0, else 0.
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

// Inverted dropout: keep with probability 1 - rate and scale kept values by 1 / (1 - rate).
// `mask` receives the per-element scale (0 or 1 / (1 - rate)) for the backward.
void dropout_forward(const Tensor& x, float rate, Rng& rng, Tensor& y, Tensor& mask);
void dropout_backward(const Tensor& mask, const Tensor& dy, Tensor& dx);

}  // namespace nnr
