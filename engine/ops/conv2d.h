#pragma once
// 2-D convolution (cross-correlation, as PyTorch's Conv2d) on NCHW tensors with weights
// [O, C, KH, KW], square stride and zero padding. CPU: batched im2col, one GEMM per chunk of
// samples (sized to the cache; threads take whole chunks). The three entry points mirror
// cuDNN's forward / backward-data / backward-filter so the CUDA path can swap in behind the
// same calls.
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/ops/gather.h"

namespace nnr {

struct Conv2dGeometry {
  int64_t stride = 1;
  int64_t padding = 0;
};

Shape conv2d_output_shape(const Shape& input, const Shape& weight, Conv2dGeometry g);
// y = conv(x, w) (+ bias per output channel when bias is non-null); overwrites y.
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, Conv2dGeometry g, Tensor& y);
// dx = conv_transpose(dy, w); overwrites dx.
void conv2d_backward_data(const Tensor& dy, const Tensor& w, Conv2dGeometry g, Tensor& dx);
// dw[o] += sum_n dy[n, o] (*) x[n] for o in `rows` (every filter when rows is null). On CUDA the
// rows go to the device through `index` (a layer's cache: uploaded once while they stay the same;
// null: uploaded on every call).
void conv2d_backward_filter(const Tensor& x, const Tensor& dy, Conv2dGeometry g, const std::vector<int64_t>* rows,
                            Tensor& dw, RowIndex* index = nullptr);

}  // namespace nnr
